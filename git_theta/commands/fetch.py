"""`git theta fetch [REMOTE] [REV...]`: download the objects the checkpoints of REVs need."""

from __future__ import annotations

from typing import TextIO

from git_theta.git.repo import Repo
from git_theta.transfer import objects_in
from git_theta.transfer.remote import download

__all__ = ["fetch"]


def fetch(remote: str | None, revs: list[str], *, out: TextIO) -> int:
    """Download what the tracked checkpoints in REVs (default HEAD) need and the local store
    lacks, from REMOTE (default: the remote Git LFS would pick). Nothing is checked out."""
    repo = Repo()
    referenced = objects_in.snapshot(repo, revs or ["HEAD"])
    stats = download(repo, remote, referenced.refs, users=referenced.users)
    present = len(referenced.refs) - stats.asked
    source = f" from {stats.remote}" if stats.remote else ""
    out.write(
        f"Downloaded {stats.moved} object(s) ({stats.bytes / (1 << 20):.1f} MiB){source}; "
        f"{present} of {len(referenced.refs)} were present already.\n"
    )
    return 0
