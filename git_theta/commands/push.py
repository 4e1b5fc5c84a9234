"""`git theta push [REMOTE] [REV...]` and the pre-push hook body: upload checkpoint objects.

Which objects: those referenced by metadata blobs reachable from the pushed commits and not from
the remote's tracking refs (git's own record of what the remote has), less those that the
commits bordering that history (which the remote has) reference already. The batch API then
tells which of them the server still lacks, so nothing depends on local side records, and a
merge commit, a rebased branch or a push from a fresh clone sends exactly what is missing.
"""

from __future__ import annotations

from typing import TextIO

from git_theta.git.repo import Repo, run_git
from git_theta.transfer import objects_in
from git_theta.transfer.endpoint import default_remote
from git_theta.transfer.queue import TransferStats
from git_theta.transfer.remote import upload

__all__ = ["pre_push", "push"]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _remotes(repo: Repo) -> set[str]:
    return set(repo.git("remote").decode().split())


def _upload_history(repo: Repo, remote: str, tips: list[str], exclude: list[str]) -> TransferStats:
    if remote in _remotes(repo):
        exclude = [*exclude, f"--remotes={remote}"]
    referenced = objects_in.history(repo, tips, exclude)
    # A new metadata blob mostly names objects its previous version (in a commit the remote
    # has) named too: unchanged tensors. Those are on the server already, so only the rest
    # go to the batch endpoint. `git theta push --all` asks about everything.
    known = objects_in.boundary(repo, tips, exclude)
    if known and referenced.refs:
        referenced = referenced.without(objects_in.snapshot(repo, known))
    return upload(repo, remote, referenced.refs, users=referenced.users)


def push(remote: str | None, revs: list[str], *, all_history: bool, out: TextIO) -> int:
    """Upload the objects of REVs (default HEAD) that the remote lacks.

    Args:
        remote: remote name or URL (default: the remote Git LFS would pick).
        all_history: look at every commit reachable from REVs, not only those the remote's
            tracking refs do not already contain (for a mirror, or a server that lost objects).
    """
    repo = Repo()
    name = remote or default_remote(repo) or "origin"
    tips = [_commit(repo, rev) for rev in revs or ["HEAD"]]
    if all_history:
        referenced = objects_in.history(repo, tips)
        stats = upload(repo, name, referenced.refs, users=referenced.users)
    else:
        stats = _upload_history(repo, name, tips, [])
    where = stats.remote or name
    out.write(
        f"Uploaded {stats.moved} object(s) ({_mib(stats.bytes)}) to {where}; "
        f"{stats.asked - stats.moved} of {stats.asked} were there already.\n"
    )
    return 0


def _commit(repo: Repo, rev: str) -> str:
    return (
        repo.git("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").decode().strip()
    )


def _is_zero(oid: str) -> bool:
    return set(oid) == {"0"}


def pre_push(remote: str, url: str, stdin: TextIO, err: TextIO) -> int:
    """Body of the pre-push hook. Git gives the remote's name (or URL) and URL as arguments and
    `<local ref> <local oid> <remote ref> <remote oid>` lines on stdin; a non-zero exit
    aborts the push, so the remote ref never points at commits whose objects are missing."""
    repo = Repo()
    tips: list[str] = []
    exclude: list[str] = []
    for line in stdin:
        fields = line.split()
        if len(fields) != 4 or _is_zero(fields[1]):
            continue  # a deletion sends nothing
        tips.append(fields[1])
        remote_oid = fields[3]
        if not _is_zero(remote_oid) and _have_commit(repo, remote_oid):
            exclude.append(remote_oid)
    if not tips:
        return 0
    stats = _upload_history(repo, remote or url, tips, exclude)
    if stats.moved and err.isatty():
        err.write(
            f"git-theta: uploaded {stats.moved} object(s) ({_mib(stats.bytes)}) to {stats.remote}\n"
        )
    return 0


def _have_commit(repo: Repo, oid: str) -> bool:
    proc = run_git(
        ["cat-file", "-e", f"{oid}^{{commit}}"], cwd=repo.toplevel or repo.git_dir, check=False
    )
    return proc.returncode == 0
