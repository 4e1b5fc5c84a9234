"""Direct checkout: large checkpoints reach the work tree without Git's smudge buffer.

Git reads a smudge filter's whole answer into memory before it writes the file, so a 1 GiB
checkpoint costs Git 1 GiB, and one larger than memory cannot be checked out. Here, when the
Git command is one that writes each smudge's answer to the work tree at the request's path
(git_theta/git/invoker.py) and the checkpoint holds at least `theta.directCheckoutBytes` of
tensors, the filter answers with the metadata itself: Git writes that small file and records
it in the index. The filter keeps the path and the metadata, and when Git closes the filter's
input (Git waits for the filter to exit before it exits itself: gitattributes(5), "Git will
wait until the filter process has stopped") it writes each real checkpoint whose work-tree
file still holds exactly that metadata, atomically, then refreshes those index entries.

A kill at any moment leaves each file as the metadata Git wrote or the whole new checkpoint
(temp file + rename); `git theta checkout` finishes what is left (`finish`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from git_theta import metadata as md
from git_theta import settings, written
from git_theta.context import RepoContext
from git_theta.errors import ConfigError, GitError
from git_theta.git import invoker, worktree
from git_theta.smudge import Smudger

__all__ = ["DirectCheckout", "finish", "threshold"]


def threshold(ctx: RepoContext) -> int:
    """Tensor bytes from which a checkpoint takes the direct path; 0 or less: never."""
    value = settings.DIRECT_CHECKOUT_BYTES_ENV.read() or ctx.config(settings.DIRECT_CHECKOUT_BYTES)
    if value is None:
        return int(settings.DIRECT_CHECKOUT_BYTES.default)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"{settings.DIRECT_CHECKOUT_BYTES.name} must be a whole number of bytes, not {value!r}"
        ) from None


def _trace(kind: str, command: str | None, path: str) -> None:
    target = settings.CHECKOUT_TRACE_ENV.read()
    if target:
        with open(target, "a", encoding="utf-8", errors="surrogateescape") as f:
            f.write(f"{kind} {command or '-'} {path}\n")


class DirectCheckout:
    """One filter process's direct checkouts: which smudges take the path, and the files to
    write when Git is done."""

    def __init__(self, ctx: RepoContext, smudger: Smudger) -> None:
        self.ctx = ctx
        self.smudger = smudger
        self.pending: dict[str, bytes] = {}  # path -> metadata Git wrote there
        self._command: str | None = None
        self._allowed: bool | None = None

    def _command_allows(self) -> bool:
        if self._allowed is None:
            found = invoker.find_invoker()
            command, args = invoker.git_subcommand(found.argv) if found else (None, ())
            self._command = command
            self._allowed = self.ctx.repo.toplevel is not None and invoker.writes_work_tree(
                command, args
            )
        return self._allowed

    def take(self, data: bytes, path: str) -> bool:
        """True when the smudge of `path` should answer `data` (the metadata) unchanged and
        the checkpoint be written by `finish_pending`. Fetches absent objects first, so a
        missing one fails the smudge as it would on the smudge path."""
        if not md.looks_like_metadata(data[: len(md.MAGIC)]):
            return False
        meta = md.decode(data, source=path)
        limit = threshold(self.ctx)
        size = sum(e.nbytes for e in meta.params.values())
        if not self._command_allows() or limit <= 0 or size < limit:
            _trace("smudge", self._command, path)
            return False
        self.ctx.check_objects(meta, path)
        self.pending[path] = data
        _trace("direct", self._command, path)
        return True

    def finish_pending(self) -> None:
        """Write the checkpoints of this process's direct smudges (Git is done with the
        work tree)."""
        if self.pending:
            finish(self.ctx, self.smudger, self.pending)
            self.pending = {}


def holds(target: Path, data: bytes) -> bool:
    """True when `target` is a regular file holding exactly `data`."""
    try:
        if not target.is_file() or target.is_symlink() or target.stat().st_size != len(data):
            return False
        return target.read_bytes() == data
    except OSError:
        return False


def finish(ctx: RepoContext, smudger: Smudger, pending: Mapping[str, bytes]) -> list[str]:
    """Write the checkpoint for each `path -> metadata` whose work-tree file still holds that
    metadata (anything else there is newer than our smudge: left alone), then refresh their
    index entries. Returns the paths written.

    Raises:
        GitThetaError: a checkpoint could not be written (its file keeps the metadata).
    """
    repo = ctx.repo
    done: list[str] = []
    lock = repo.git_dir / "theta" / "checkout" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "wb") as held:
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX)  # one finisher per work tree at a time
        writer = _pausing(smudger) if settings.FINISH_PAUSE_ENV.read() else smudger
        for path, data in pending.items():
            target = repo.worktree / path
            if not holds(target, data):
                continue
            _remove_stale_temps(target)
            writer.write_file(data, path, target)
            written.record(repo.git_dir, path, target, data)
            _trace("finished", None, path)
            done.append(path)
    if done:
        _refresh(ctx, done)
    return done


def _remove_stale_temps(target: Path) -> None:
    """Temp files a killed finisher left beside `target` (we hold the work tree's lock, so no
    live finisher owns them); atomic_write names them `.<name>.<random>.tmp`."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


def _refresh(ctx: RepoContext, paths: list[str]) -> None:
    """Give the index the new files' stat data, so `git status` trusts them without reading
    them (the cleaner answers from `written` when Git does read them).

    The index holds the size of the metadata file Git wrote, and Git takes a size change for
    a modification without reading the file (read-cache.c `ie_modified`) unless the recorded
    size is 0. So the entries are first re-added as they are (`mark_for_checkout`: same blob,
    stat data cleared), then `git add --refresh` (only these paths, nothing staged) has Git
    compare their content, cleaned from `written`, and record the new stat data. The index
    may be locked by a Git command still running (`git stash` after its `reset --hard`
    child): then the next `git status` does the same."""
    try:
        worktree.mark_for_checkout(ctx.repo, paths)
        ctx.repo.git(
            "--literal-pathspecs",
            "add",
            "--refresh",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            input="".join(f"{p}\0" for p in paths).encode("utf-8", "surrogateescape"),
        )
    except GitError:
        pass


def _pausing(smudger: Smudger) -> Smudger:
    """Testing only (settings.FINISH_PAUSE_ENV): a smudger that stops for good after that many
    bytes of a checkpoint, so a test can kill the finisher mid-write."""
    limit = int(settings.FINISH_PAUSE_ENV.read() or 0)

    class Pausing(Smudger):
        def smudge(self, data: bytes, path: str, out: BinaryIO) -> None:
            super().smudge(data, path, _PauseAfter(out, limit))  # type: ignore[arg-type]

    return Pausing(smudger.ctx)


class _PauseAfter:
    def __init__(self, out: BinaryIO, limit: int) -> None:
        self._out = out
        self._left = limit

    def write(self, data: bytes) -> int:
        n = self._out.write(data)
        self._left -= len(data)
        if self._left <= 0:
            self._out.flush()
            os.fsync(self._out.fileno())
            while True:
                time.sleep(60)
        return n

    def __getattr__(self, name: str) -> object:
        return getattr(self._out, name)
