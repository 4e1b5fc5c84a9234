"""Direct checkout: large checkpoints reach the work tree without Git's smudge buffer.

Git reads a smudge filter's whole answer into memory before it writes the file, so a 1 GiB
checkpoint costs Git 1 GiB, and one larger than memory cannot be checked out. Here, when the
Git command is one that writes each smudge's answer to the work tree at the request's path
(git_theta/git/invoker.py) and the checkpoint holds at least `theta.directCheckoutBytes` of
tensors, the filter writes the checkpoint itself, beside the file under a name of its own
(`.<name>.<pid>.theta-staged`), and then answers with the metadata: Git writes that small
file and records it in the index. Writing during the request keeps Git's error handling: a
missing or corrupt object or a full disk fails that smudge and the Git command, as on the
smudge path. When Git closes the filter's input (Git waits for the filter to exit before it
exits itself: gitattributes(5), "Git will wait until the filter process has stopped"), each
staged checkpoint whose work-tree file still holds exactly the metadata Git wrote is renamed
over it, and those index entries are refreshed.

A kill at any moment leaves each file as Git left it (the metadata, or nothing where Git's
own checkout failed) or the whole new checkpoint, never a torn one; `git theta checkout`
finishes what is left (`finish`) and removes what a killed filter staged.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from git_theta import kept, settings, written
from git_theta import metadata as md
from git_theta.context import RepoContext
from git_theta.errors import ConfigError, GitError
from git_theta.git import index_stat, invoker, worktree
from git_theta.smudge import Smudger

__all__ = ["DirectCheckout", "finish", "finishing", "index_written", "threshold"]

# Each tensor's hash -> (offset, size) in a checkpoint written (Smudger.write_file).
Landing = dict[str, tuple[int, int]]

# A checkpoint written during the smudge waits beside its file as `.<name>.<pid><suffix>`.
STAGED_SUFFIX = ".theta-staged"


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
        self.staged: dict[str, Path] = {}  # path -> its checkpoint, written beside it
        self.landing: dict[str, Landing | None] = {}  # path -> where its tensors lie in it
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

    def take(self, data: bytes, meta: md.Metadata, path: str) -> bool:
        """True when the smudge of `path` should answer `data` (the metadata, parsed as
        `meta`) unchanged and the checkpoint be written by `finish_pending`. Fetches absent
        objects first, so a missing one fails the smudge as it would on the smudge path."""
        limit = threshold(self.ctx)
        size = sum(e.nbytes for e in meta.params.values())
        if not self._command_allows() or limit <= 0 or size < limit:
            _trace("smudge", self._command, path)
            return False
        # Written now, under a name of our own beside the file: a missing or corrupt object
        # or a full disk fails this smudge, and so the Git command, as on the smudge path.
        target = self.ctx.repo.worktree / path
        staged = target.parent / f".{target.name}.{os.getpid()}{STAGED_SUFFIX}"
        target.parent.mkdir(parents=True, exist_ok=True)  # Git would make it next
        self.landing[path] = _write(self.ctx, self.smudger, data, path, staged, meta)
        self.pending[path] = data
        self.staged[path] = staged
        _trace("direct", self._command, path)
        return True

    def finish_pending(self) -> None:
        """Move the checkpoints of this process's direct smudges into place (Git is done with
        the work tree)."""
        if self.pending:
            finish(self.ctx, self.smudger, self.pending, self.staged, self.landing)
            self.pending, self.staged, self.landing = {}, {}, {}


def holds(target: Path, data: bytes) -> bool:
    """True when `target` is a regular file holding exactly `data`."""
    try:
        if not target.is_file() or target.is_symlink() or target.stat().st_size != len(data):
            return False
        return target.read_bytes() == data
    except OSError:
        return False


def finish(
    ctx: RepoContext,
    smudger: Smudger,
    pending: Mapping[str, bytes],
    staged: Mapping[str, Path] | None = None,
    landing: Mapping[str, Landing | None] | None = None,
) -> list[str]:
    """Put the checkpoint in place for each `path -> metadata` whose work-tree file still
    holds that metadata (anything else there is newer than our smudge: left alone), renaming
    it from `staged` when it was written already (its tensors where `landing` says), keep a
    link to it for the next checkout (kept.py), then refresh their index entries. Returns
    the paths written.

    Raises:
        GitThetaError: a checkpoint could not be written (its file keeps the metadata).
    """
    repo = ctx.repo
    done: dict[str, tuple[bytes, os.stat_result]] = {}  # path -> (metadata, file's stat)
    with finishing(repo.git_dir):
        for path, data in pending.items():
            target = repo.worktree / path
            ready = (staged or {}).get(path)
            if not holds(target, data):
                if ready is not None:
                    ready.unlink(missing_ok=True)
                continue
            _remove_stale_temps(target, keep=ready)
            if ready is not None:
                os.chmod(ready, stat.S_IMODE(os.stat(target).st_mode))  # the mode Git chose
                os.replace(ready, target)
                where = (landing or {}).get(path)
            else:
                where = _write(ctx, smudger, data, path, target, None)
            _settle(target)
            if where is not None:
                kept.keep(repo.git_dir, path, target, where)  # before `record`: it sets ctime
            done[path] = (data, written.record(repo.git_dir, path, target, data))
            _trace("finished", None, path)
        kept.sweep(repo.git_dir)
    if done:
        _refresh(ctx, done)
    return list(done)


@contextmanager
def finishing(git_dir: Path) -> Iterator[None]:
    """Held while a finisher works on the work tree of `git_dir` (one at a time)."""
    lock = git_dir / "theta" / "checkout" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "wb") as held:
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def index_written(ctx: RepoContext, paths: Mapping[str, bytes]) -> None:
    """Work-tree files just written from metadata (`path -> metadata`, the metadata already
    their index entries' blobs): date them for the index, record them (written.py) and give
    the index their stat data, so neither `git status` nor the next clean reads them."""
    done = {}
    for path, data in paths.items():
        target = ctx.repo.worktree / path
        _settle(target)
        done[path] = (data, written.record(ctx.repo.git_dir, path, target, data))
    _refresh(ctx, done)


def _write(
    ctx: RepoContext,
    smudger: Smudger,
    data: bytes,
    path: str,
    target: Path,
    meta: md.Metadata | None,
) -> Landing | None:
    """Write the checkpoint to `target`, copying what the kept copy of `path` shares."""
    if meta is None:
        meta = smudger.parse(data, path)
    needed = sum(e.nbytes for e in meta.params.values())
    reuse = kept.open_kept(ctx.repo.git_dir, path, room=(target.parent, needed))
    try:
        where = _writer(smudger).write_file(data, path, target, meta=meta, reuse=reuse)
    finally:
        if reuse is not None:
            reuse.close()
    if reuse is not None:
        _trace("reused", f"{reuse.copied}", path)
        if reuse.adopted:
            _trace("rewrote", None, path)
    return where


def _settle(target: Path) -> None:
    """Date the file's content a whole second back. Git (built without USE_NSEC, as Debian's
    is) takes an entry whose mtime falls in the second the index was written for racily
    clean, and reads the file again, the whole checkpoint through the filter, on every
    command until one rewrites the index (measured: 0.38 s per command for 1 GiB). The
    refresh below writes the index after this, so the entry is never racy."""
    second = 1_000_000_000
    past = (time.time_ns() // second - 1) * second
    os.utime(target, ns=(os.stat(target).st_atime_ns, past))


def _remove_stale_temps(target: Path, *, keep: Path | None) -> None:
    """Files a killed filter left beside `target`: checkpoints it staged
    (`.<name>.<pid>.theta-staged`, and their `atomic_write` temp files, which start with
    another dot) while that pid is gone, and `atomic_write`'s temp files for `target` itself
    (`.<name>.<random>.tmp`: we hold the work tree's lock, and a live finisher renames its
    temp file before it lets go of it)."""
    for leftover in target.parent.glob(f"*.{target.name}.*"):
        name = leftover.name.lstrip(".")
        if leftover == keep or not leftover.name.startswith("."):
            continue
        if STAGED_SUFFIX in name:
            pid = name[len(target.name) + 1 :].split(".", 1)[0]
            if not (pid.isdigit() and _alive(int(pid))):
                leftover.unlink(missing_ok=True)
        elif name.endswith(".tmp") and leftover.name.startswith(f".{target.name}."):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """True unless `pid` is gone or a zombie (a killed filter whose parent died first waits
    for init to reap it)."""
    if Path("/proc/self/stat").exists():
        try:
            line = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return False
        return line[line.rfind(b")") + 2 : line.rfind(b")") + 3] != b"Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer(smudger: Smudger) -> Smudger:
    return _pausing(smudger) if settings.FINISH_PAUSE_ENV.read() else smudger


def _refresh(ctx: RepoContext, done: Mapping[str, tuple[bytes, os.stat_result]]) -> None:
    """Give the index the new files' stat data, so `git status` trusts them without reading
    them.

    Written into the index directly where it can be (git/index_stat.py: each entry's blob is
    checked to be the metadata the file was written from). Otherwise through Git: the index
    holds the size of the metadata file Git wrote, and Git takes a size change for a
    modification without reading the file (read-cache.c `ie_modified`) unless the recorded
    size is 0. So the entries are first re-added as they are (`mark_for_checkout`: same blob,
    stat data cleared), then `git add --refresh` (only these paths, nothing staged) has Git
    compare their content, cleaned from `written` (the whole file fed to the filter), and
    record the new stat data. The index may be locked by a Git command still running (`git
    stash` after its `reset --hard` child): then the next `git status` does the same."""
    fmt = ctx.repo.object_format
    recorded = index_stat.set_stat(
        ctx.repo.git_dir,
        {path: (index_stat.blob_id(data, fmt), st) for path, (data, st) in done.items()},
        fmt,
    )
    _trace("indexed", str(len(recorded)), "-")
    paths = [p for p in done if p not in recorded]
    if not paths:
        return
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
        # The stream path, so the pause falls between two writes to the temp file (the placed
        # path writes from worker threads).
        def write_file(
            self,
            data: bytes,
            path: str,
            target: str | os.PathLike[str],
            *,
            meta: md.Metadata | None = None,
            reuse: kept.Kept | None = None,
        ) -> Landing | None:
            from git_theta.atomic import atomic_write

            with atomic_write(target, keep_mode=True) as f:
                self.smudge(data, path, _PauseAfter(f, limit), meta=meta)  # type: ignore[arg-type]
            return None

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
