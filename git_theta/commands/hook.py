"""The bodies of the hooks git-theta installs (git_theta/git/hooks.py writes the scripts)."""

from __future__ import annotations

import io
import os
from typing import BinaryIO, TextIO

from git_theta.git import hooks, lfs
from git_theta.git.repo import Repo

__all__ = ["pre_push"]


def pre_push(remote: str, url: str, stdin: BinaryIO, err: TextIO) -> int:
    """`git push`'s pre-push hook: Git LFS's upload first when the repository uses Git LFS
    and the chained hook does not run it, then ours. A non-zero exit aborts the push.

    Args:
        remote, url: the hook's arguments (the remote's name, or its URL, and the URL).
        stdin: git's `<local ref> <local oid> <remote ref> <remote oid>` lines.
    """
    from git_theta.commands.push import pre_push as upload_checkpoints

    data = stdin.read()
    repo = Repo()
    if _lfs_not_chained(repo) and lfs.in_use(repo):
        code = lfs.run_pre_push(repo, [remote, url] if url else [remote], data)
        if code != 0:
            return code
    text = io.StringIO(data.decode("utf-8", "surrogateescape"))
    return upload_checkpoints(remote, url, text, err)


def _lfs_not_chained(repo: Repo) -> bool:
    legacy = hooks.hooks_dir(repo) / f"{hooks.PRE_PUSH.name}{hooks.LEGACY_SUFFIX}"
    text = lfs.read_hook(legacy)
    # The shell hook runs the chained one only when it is executable.
    return text is None or not os.access(legacy, os.X_OK) or not lfs.calls_pre_push(text)
