"""`git-theta index-merge-driver %O %A %B %P`: git's merge driver for shard indexes
(`*.safetensors.index.json merge=theta-index`). The result goes to %A (temp file, then
rename); exit 0 when merged, 1 on a conflict, with the conflicted parameters on stderr."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from git_theta.errors import CheckpointError, GitThetaError
from git_theta.git.repo import Repo
from git_theta.sharded.merge import Totals, merge_indexes
from git_theta.sharded.sizes import merge_commits, merged_totals

__all__ = ["index_merge_driver"]

EXIT_MERGED = 0
EXIT_CONFLICT = 1


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def _totals(repo: Repo, path: str) -> Totals | None:
    """Sizes from the shards of the commits git merges, when git says which they are."""
    try:
        commits = merge_commits(repo)
    except GitThetaError:
        return None
    if commits is None:
        return None
    return lambda shards, merged: merged_totals(repo, path, commits, shards, merged)


def index_merge_driver(
    base: str, ours: str, theirs: str, path: str, *, err: TextIO | None = None
) -> int:
    """Merge the shard index versions git passes as files; see git_theta/sharded/merge.py.

    A version that is not a valid index is a conflict (ours stays in %A), named on stderr.
    """
    err = err or sys.stderr
    ours_data = _read(ours) or b""
    try:
        repo: Repo | None = Repo()
    except GitThetaError:
        repo = None
    try:
        merged = merge_indexes(
            _read(base),
            ours_data,
            _read(theirs) or b"",
            path=path,
            labels=("ours", "theirs"),
            totals=_totals(repo, path) if repo is not None else None,
        )
    except CheckpointError as exc:
        err.write(f"git-theta: cannot merge {path}: {exc}\n")
        return EXIT_CONFLICT
    finally:
        if repo is not None:
            repo.close()
    target = Path(ours)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(merged.text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if merged.conflicts:
        names = ", ".join(merged.conflicts)
        err.write(
            f"git-theta: {path}: moved to different shards on both sides: {names}; "
            "edit the weight_map lines between the markers to the shard that holds each\n"
        )
        return EXIT_CONFLICT
    return EXIT_MERGED
