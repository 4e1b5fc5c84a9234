"""`git theta prune [--dry-run] [--verify-remote] [--recent DAYS]`: reclaim the store.

The rules for what stays are in git_theta/store/prune.py. Prints what it removed (or, with
`--dry-run`, would remove): objects, temp files, and what it kept on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from git_theta import kept
from git_theta.errors import TransferError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import open_store
from git_theta.store.prune import (
    DEFAULT_RECENT_DAYS,
    FRESH_OBJECT_SECONDS,
    RemoteHas,
    delete,
    plan_prune,
)

__all__ = ["prune", "remote_holds"]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def remote_holds(repo: Repo, remote: str | None) -> RemoteHas:
    """A function telling which objects the remote's batch API offers to download.

    Raises:
        TransferError: there is no such remote (checked now, before anything is planned).
    """
    from git_theta.transfer.base import BATCH_SIZE, BatchFailed
    from git_theta.transfer.options import TransferOptions
    from git_theta.transfer.remote import open_transport, resolve_endpoint

    endpoint = resolve_endpoint(repo, remote, "download")

    def held(refs: Sequence[ObjectRef]) -> set[str]:
        transport = open_transport(repo, endpoint, TransferOptions.from_config(repo))
        found: set[str] = set()
        try:
            for start in range(0, len(refs), BATCH_SIZE):
                try:
                    planned = transport.batch("download", refs[start : start + BATCH_SIZE])
                except BatchFailed as exc:
                    raise TransferError(
                        f"{endpoint.description}: cannot tell which objects it holds "
                        f"({exc.reason}); nothing was deleted",
                        remote=endpoint.description,
                    ) from None
                for obj in planned:
                    if obj.error is None and "download" in obj.actions:
                        found.add(obj.ref.oid)
        finally:
            transport.close()
        return found

    return held


def prune(
    *,
    dry_run: bool,
    verify_remote: bool,
    recent_days: float | None,
    remote: str | None = None,
    out: TextIO,
) -> int:
    """Delete what nothing needs (see git_theta/store/prune.py); returns the exit code."""
    repo = Repo()
    store = open_store(repo)
    plan = plan_prune(
        repo,
        store,
        recent_days=DEFAULT_RECENT_DAYS if recent_days is None else recent_days,
        remote_has=remote_holds(repo, remote) if verify_remote else None,
    )
    if dry_run:
        for path, size in plan.objects:
            out.write(f"would remove {path.name} ({size} bytes)\n")
        count, nbytes = len(plan.objects), plan.object_bytes
        verb = "would remove"
    else:
        count, nbytes = delete(store, plan)
        verb = "removed"
        swept = kept.sweep(repo.git_dir)
        if swept:
            out.write(
                f"prune: removed the kept copies of checkpoints no longer in the work tree "
                f"({_mib(swept)}).\n"
            )
    out.write(
        f"prune: {verb} {count} object(s) ({_mib(nbytes)}) and {len(plan.tmp)} stale temp "
        f"file(s) ({_mib(plan.tmp_bytes)}) from {store.root}.\n"
    )
    if plan.kept_fresh:
        hours = FRESH_OBJECT_SECONDS // 3600
        out.write(
            f"prune: kept {plan.kept_fresh} unreferenced object(s) written in the last "
            f"{hours} hours (a git command may be about to reference them).\n"
        )
    if plan.kept_unverified:
        out.write(
            f"prune: kept {plan.kept_unverified} object(s) of older versions that the remote "
            "does not hold.\n"
        )
    return 0
