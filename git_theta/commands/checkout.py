"""`git theta checkout`: write out tracked checkpoints whose files still hold metadata.

That is what a clone made without git-theta leaves behind. The objects all of them need are
fetched in one transfer first; then each file is removed (it holds only metadata, which git
keeps) and checked out again through the filter.
"""

from __future__ import annotations

from typing import TextIO

from git_theta import metadata as md
from git_theta.errors import ConfigError
from git_theta.git import worktree
from git_theta.git.repo import Repo
from git_theta.transfer.objects_in import Referenced
from git_theta.transfer.remote import download

__all__ = ["checkout"]


def checkout(remote: str | None, *, out: TextIO) -> int:
    repo = Repo()
    if not repo.config_get("filter.theta.process"):
        raise ConfigError(
            "git-theta's filter is not configured for this repository; run `git theta install`"
        )
    stale = worktree.unsmudged(repo)
    if not stale:
        out.write("Every tracked checkpoint is checked out already.\n")
        return 0
    referenced = Referenced()
    for path in stale:
        blob = repo.read_blob(f":{path}")
        if blob is not None and md.looks_like_metadata(blob[: len(md.MAGIC)]):
            referenced.add(path, md.decode(blob, source=f"index:{path}"))
    download(repo, remote, referenced.refs, users=referenced.users)
    for path in stale:
        (repo.worktree / path).unlink()
    repo.git(
        "--literal-pathspecs",
        "checkout",
        "--pathspec-from-file=-",
        "--pathspec-file-nul",
        input="".join(f"{p}\0" for p in stale).encode(),
    )
    out.write(f"Checked out {len(stale)} checkpoint(s).\n")
    return 0
