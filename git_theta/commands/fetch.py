"""`git theta fetch [REMOTE] [REV...]`: download the objects the checkpoints of REVs need."""

from __future__ import annotations

from typing import TextIO

from git_theta.git.repo import Repo
from git_theta.store import open_store
from git_theta.store.verify import check_bytes, move_aside, parallel
from git_theta.transfer import objects_in
from git_theta.transfer.remote import download

__all__ = ["fetch"]


def fetch(remote: str | None, revs: list[str], *, out: TextIO) -> int:
    """Download what the tracked checkpoints in REVs (default HEAD) need and the local store
    lacks, from REMOTE (default: the remote Git LFS would pick). Nothing is checked out.

    Objects already present are verified first (size and sha256 against the oid): a copy that
    fails is moved aside to `<store>/bad/` and downloaded again, never trusted."""
    repo = Repo()
    referenced = objects_in.snapshot(repo, revs or ["HEAD"])
    store = open_store(repo)
    present = [ref for ref in referenced.refs if store.path(ref.oid).exists()]
    checked = parallel(lambda r: check_bytes(store, r), present)
    bad = [ref for ref, why in zip(present, checked, strict=True) if why]
    for ref in bad:
        moved = move_aside(store, ref.oid)
        out.write(f"Object {ref.oid} failed verification; moved it to {moved}.\n")
    stats = download(repo, remote, referenced.refs, users=referenced.users)
    source = f" from {stats.remote}" if stats.remote else ""
    out.write(
        f"Downloaded {stats.moved} object(s) ({stats.bytes / (1 << 20):.1f} MiB){source}; "
        f"{len(present) - len(bad)} of {len(referenced.refs)} were present and verified already.\n"
    )
    return 0
