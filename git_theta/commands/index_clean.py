"""`git-theta index-clean %f`: the clean filter of shard indexes
(`*.safetensors.index.json filter=theta-index`). The index passes through unchanged; when it
disagrees with the shards in the work tree, each problem is a warning on stderr, so
`git add` says so before the commit is made."""

from __future__ import annotations

import sys
from typing import BinaryIO, TextIO

from git_theta.errors import GitThetaError
from git_theta.git.repo import Repo
from git_theta.sharded.consistency import problems_of
from git_theta.sharded.index import MAX_INDEX_BYTES

__all__ = ["index_clean"]


def index_clean(
    path: str,
    *,
    src: BinaryIO | None = None,
    dst: BinaryIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Copy the index from `src` to `dst` (stdin to stdout) and warn about disagreements.

    Never fails the `git add`: the content is git's, the check is advice.
    """
    src = src or sys.stdin.buffer
    dst = dst or sys.stdout.buffer
    err = err or sys.stderr
    data = src.read()
    dst.write(data)
    dst.flush()
    if len(data) > MAX_INDEX_BYTES:
        return 0
    try:
        repo = Repo()
        try:
            problems = problems_of(repo, path, data, None, worktree=True)
        finally:
            repo.close()
    except GitThetaError as exc:
        problems = [str(exc)]
    for problem in problems:
        err.write(f"git-theta: warning: {problem}\n")
    return 0
