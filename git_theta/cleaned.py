"""Checkpoints the clean filter read from the work tree, kept for the next checkout.

A direct checkout rewrites the previous version's file where the versions differ instead of
decoding every tensor (kept.py), but only if it can still read that file: Git unlinks the
work-tree name before it asks for the new version. Files git-theta wrote are kept by the
finisher; this keeps the user's own: the checkpoint a `git add` (or `commit -a`, `status`,
`diff`) just cleaned, so that the first checkout after an add costs what switching back
does (0.25 s against 0.8-1.6 s for a 1 GiB checkpoint, measured in the same repository).

Linking a file changes its ctime, which Git compares with the index (the add had recorded
the file's stat data before the link), so the next Git command would read the whole file
again. So when Git has closed our input, with its index written, each cleaned file is kept
only if it is safe to record its new stat data in the index ourselves
(git/index_stat.py): its stage-0 entry holds exactly the metadata this clean produced, and
the file has the identity (device, inode, size, mtime and ctime) it had before Git sent its
content, so the content we cleaned is the file's and nothing has written it since. After the
link, the file's mtime and size must still be those: a write in between drops the keep.
Nothing else changes the user's file; its mtime stays.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from git_theta import kept, written
from git_theta import metadata as md
from git_theta.context import RepoContext
from git_theta.direct import finishing
from git_theta.errors import GitThetaError
from git_theta.git import index_stat
from git_theta.smudge import Smudger

__all__ = ["Cleaned"]


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Cleaned:
    """One filter process's cleans of work-tree files, kept when Git is done (`finish`)."""

    def __init__(self, ctx: RepoContext, smudger: Smudger) -> None:
        self.ctx = ctx
        self.smudger = smudger
        self._before: dict[str, os.stat_result] = {}
        self._pending: dict[str, tuple[bytes, os.stat_result]] = {}

    def starting(self, path: str) -> None:
        """Before the content of `path` is read: the file's stat data as Git sends it."""
        self._before.pop(path, None)
        if self.ctx.repo.toplevel is None:
            return
        try:
            st = os.lstat(self.ctx.repo.toplevel / path)
        except OSError:
            return
        # A second link is ours when the file was kept before and then saved over in place,
        # as training loops do; any other link is the user's, and such a file is never kept.
        if stat.S_ISREG(st.st_mode) and (
            st.st_nlink == 1 or (st.st_nlink == 2 and kept.holds(self.ctx.repo.git_dir, path, st))
        ):
            self._before[path] = st

    def cleaned(self, path: str, metadata: bytes) -> None:
        """`path` cleaned to `metadata`."""
        before = self._before.pop(path, None)
        if before is not None and metadata:
            self._pending[path] = (metadata, before)

    def finish(self) -> None:
        """Keep each cleaned file whose index entry holds its metadata (module docstring)."""
        pending, self._pending = self._pending, {}
        if not pending or "GIT_INDEX_FILE" in os.environ:
            return
        repo = self.ctx.repo
        fmt = repo.object_format
        blobs = index_stat.staged_blobs(repo.git_dir, list(pending), fmt)
        wanted = {p: v for p, v in pending.items() if blobs.get(p) == index_stat.blob_id(v[0], fmt)}
        done: dict[str, tuple[bytes, os.stat_result]] = {}
        with finishing(repo.git_dir):
            for path, (metadata, before) in wanted.items():
                target = repo.worktree / path
                after = self._keep(path, target, metadata, before)
                if after is not None:
                    done[path] = (index_stat.blob_id(metadata, fmt), after)
            # A checkpoint replaced by a new file (saved elsewhere, renamed over) leaves its
            # kept copy the only link: dropped here rather than at the next checkout.
            kept.sweep(repo.git_dir)
            if done:
                index_stat.set_stat(repo.git_dir, done, fmt)

    def _keep(
        self, path: str, target: Path, metadata: bytes, before: os.stat_result
    ) -> os.stat_result | None:
        git_dir = self.ctx.repo.git_dir
        try:
            if _identity(os.lstat(target)) != _identity(before):
                return None  # written since Git sent it, or replaced
            with open(target, "rb") as f:
                if md.looks_like_metadata(f.read(len(md.MAGIC))):
                    return None  # metadata Git was given back: no checkpoint to keep
            landing = self.smudger.landing(md.decode(metadata, source=path), path)
        except (OSError, GitThetaError):
            return None
        if landing is None:
            return None
        kept.keep(git_dir, path, target, landing)
        after = written.record(git_dir, path, target, metadata)
        if (after.st_ino, after.st_size, after.st_mtime_ns) != (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        ):
            kept.forget(git_dir, path)
            written.forget(git_dir, path)
            return None
        return after
