"""Checkpoints a direct checkout wrote, kept so the next checkout of the same path reuses the
tensors both versions share instead of decoding them.

Git unlinks a work-tree file before it asks the filter for the new version (entry.c
`checkout_entry`), so by the time we could read the old checkpoint its name is gone. The
finisher (direct.py) therefore hard-links each checkpoint it puts in place into
`<git dir>/theta/checkout/kept/<key>`, with a map from each tensor's content hash to where its
bytes lie. While the work tree holds that file the link costs no space; the inode outlives
Git's unlink, and the next direct checkout of the path decodes only the tensors the old
version does not hold. When the new version has the same layout and nothing else names the
file, the file itself is rewritten where the versions differ and renamed into the work tree
(`Kept.adopt`: no second copy of its pages, which measured 0.57-0.62 s against 1.05-1.11 s
for switching back on a 1 GiB checkpoint); otherwise the shared tensors are copied into the
new file (pread, hashed as copied, pwrite).

Nothing is trusted: the file's identity (device, inode, size, mtime) must be as recorded, and
every tensor taken from it is hashed and compared with the new metadata's hash; a mismatch (the file
was edited in place) falls back to decoding that tensor. The user's own checkpoint is kept by
the `git add` that cleaned it (cleaned.py), which also gives the index the stat data the link
leaves.

A kept file that nothing else links to (the work tree's copy was removed or replaced) is
dropped by the next finisher and by `git theta prune` (`sweep`), so no hidden copy of a
removed checkpoint stays on disk longer than that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import xxhash

from git_theta.atomic import write_bytes
from git_theta.metadata import ParamEntry
from git_theta.placed import SerialWrites
from git_theta.tensor import HASH_PREFIX

__all__ = ["Kept", "holds", "keep", "open_kept", "sweep"]

# Bytes copied per read: large enough that the syscalls do not show, small per thread.
COPY_BYTES = 4 * 1024 * 1024
_MAP_SUFFIX = ".map"


def _dir(git_dir: Path) -> Path:
    return git_dir / "theta" / "checkout" / "kept"


def _key(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def _identity(st: os.stat_result) -> list[int]:
    # Not ctime: Git's unlink of the work-tree name changes it, and that is the moment we read.
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def keep(git_dir: Path, path: str, target: Path, landing: Mapping[str, tuple[int, int]]) -> None:
    """Hard-link `target` (work-tree file `path`, just written; `landing` maps each tensor's
    hash to its (offset, size) in it) as the kept copy of `path`. Changes `target`'s ctime, so
    the caller records anything that depends on it afterwards. A file system without hard
    links, or a git dir on another device, keeps nothing."""
    base = _dir(git_dir) / _key(path)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        temp = base.with_name(f"{base.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temp.unlink(missing_ok=True)
        os.link(target, temp)
        info = {"path": path, "stat": _identity(os.stat(temp)), "tensors": dict(landing)}
        write_bytes(base.with_name(base.name + _MAP_SUFFIX), json.dumps(info).encode())
        os.replace(temp, base)  # drops the previous version's last link
        # rename(2) does nothing when both names link one file (kept before, then saved over
        # in place): the temporary name is still there.
        temp.unlink(missing_ok=True)
    except OSError:
        temp.unlink(missing_ok=True)
        forget(git_dir, path)


def holds(git_dir: Path, path: str, st: os.stat_result) -> bool:
    """True when the kept copy of `path` is the file `st` describes (one of its links)."""
    try:
        kept = os.stat(_dir(git_dir) / _key(path))
    except OSError:
        return False
    return (kept.st_dev, kept.st_ino) == (st.st_dev, st.st_ino)


def forget(git_dir: Path, path: str) -> None:
    base = _dir(git_dir) / _key(path)
    base.unlink(missing_ok=True)
    base.with_name(base.name + _MAP_SUFFIX).unlink(missing_ok=True)


class Kept:
    """An open kept checkpoint: copies the tensors it holds into a file being written, or
    becomes that file itself (`adopt`)."""

    def __init__(
        self, fd: int, tensors: Mapping[str, tuple[int, int]], size: int, file: Path
    ) -> None:
        self._fd = fd
        self._tensors = tensors
        self._size = size
        self._file = file
        self._rewriting: int | None = None  # our fd open for writing, once adopted
        self._local = threading.local()
        self._lock = threading.Lock()
        self.copied = 0  # tensors taken from this file (copied, or hashed in place)

    def copy(self, entry: ParamEntry, write_at: SerialWrites, offset: int) -> bool:
        """Copy `entry`'s tensor through `write_at` to `offset` when this file holds it; True
        when the bytes written hash to `entry.hash`. On False the region holds junk the caller
        overwrites."""
        where = self._tensors.get(entry.hash)
        if where is None or where[1] != entry.nbytes or where[0] + where[1] > self._size:
            return False
        if self._rewriting is not None and where[0] != offset:
            return False  # a copy within the file could overwrite bytes another tensor needs
        buf = self._buffer()
        digest = xxhash.xxh3_128()
        src, left, dst = where[0], where[1], offset
        while left:
            n = os.preadv(self._fd, [buf[: min(left, COPY_BYTES)]], src)
            if n <= 0:
                return False
            chunk = buf[:n]
            digest.update(chunk)
            if self._rewriting is None:  # rewritten in place, the bytes are there already
                write_at(chunk, dst)
            src, dst, left = src + n, dst + n, left - n
        if HASH_PREFIX + digest.hexdigest() != entry.hash:
            return False
        with self._lock:
            self.copied += 1
        return True

    def _buffer(self) -> memoryview:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = memoryview(bytearray(COPY_BYTES))
        return buf

    def adopt(self, head: bytes, size: int) -> int | None:
        """When the new checkpoint has this file's layout (the same `head`, the same `size`)
        and nothing but our link names the file (Git has unlinked the work tree's), make it
        the file to write: returns a descriptor open for writing, through which only the
        tensors that changed need to be written; tensors at their old place are then hashed
        where they lie (`copy`). Its map is dropped first, so a write that fails or is killed
        half-way leaves a file nothing trusts, which `sweep` removes. None otherwise."""
        try:
            if os.fstat(self._fd).st_nlink != 1 or self._size != size or not _unshared(self._fd):
                return None
            if os.pread(self._fd, len(head), 0) != head:
                return None
            self._file.with_name(self._file.name + _MAP_SUFFIX).unlink()
            self._rewriting = os.open(self._file, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        return self._rewriting

    @property
    def adopted(self) -> bool:
        return self._rewriting is not None

    def move_to(self, target: Path) -> None:
        """Put the adopted, rewritten file at `target` (a new name in the work tree)."""
        os.replace(self._file, target)

    def close(self) -> None:
        os.close(self._fd)
        if self._rewriting is not None:
            os.close(self._rewriting)


def _unshared(fd: int) -> bool:
    """True when nothing but `fd` has the file open or mapped, in any process: only then does
    the kernel grant a write lease (fcntl(2) F_SETLEASE), given back at once. A program that
    mapped the checkpoint before the checkout (safetensors' `safe_open`, numpy's `mmap_mode`,
    `torch.load(mmap=True)`) keeps reading the file after Git unlinks its name, and would see
    its weights change if the file were rewritten in place; it is copied from instead. Where
    leases do not exist (not Linux) or are refused (some network file systems), nothing is
    rewritten in place."""
    lease = getattr(fcntl, "F_SETLEASE", None)
    if lease is None:
        return False
    try:
        fcntl.fcntl(fd, lease, fcntl.F_WRLCK)
    except OSError:
        return False
    fcntl.fcntl(fd, lease, fcntl.F_UNLCK)
    return True


def open_kept(git_dir: Path, path: str, *, room: tuple[Path, int] | None = None) -> Kept | None:
    """The kept copy of `path`, open, when it is still the file that was kept; else None.

    `room` is (directory, bytes) about to be written there. Without a kept copy, Git's unlink
    of the old checkpoint freed its space before the new one is written; with it, both are on
    disk until the finisher moves the link. So when the kept copy is the only name of its
    file and the directory's file system lacks room for both, it is dropped first (a full
    disk must not fail a checkout that would fit without the copy)."""
    base = _dir(git_dir) / _key(path)
    if room is not None and not _room_for(base, *room):
        forget(git_dir, path)
        return None
    try:
        info = json.loads(base.with_name(base.name + _MAP_SUFFIX).read_bytes())
        fd = os.open(base, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        tensors = {str(h): (int(where[0]), int(where[1])) for h, where in info["tensors"].items()}
        if info.get("path") == path and info.get("stat") == _identity(st):
            return Kept(fd, tensors, st.st_size, base)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        pass
    os.close(fd)
    return None


# Kept beyond the new file's bytes when deciding whether both fit.
ROOM_SLACK = 64 * 1024 * 1024


def _room_for(kept_file: Path, directory: Path, nbytes: int) -> bool:
    try:
        if os.stat(kept_file).st_nlink > 1:
            return True  # dropping our link would free nothing
        st = os.statvfs(directory)
    except OSError:
        return True  # no kept file (open_kept says so), or no way to tell
    return st.f_bavail * st.f_frsize >= nbytes + ROOM_SLACK


def sweep(git_dir: Path) -> int:
    """Drop kept copies nothing else links to (their work-tree file was removed or replaced).
    Returns the bytes freed."""
    freed = 0
    try:
        names = os.listdir(_dir(git_dir))
    except OSError:
        return 0
    for name in names:
        file = _dir(git_dir) / name
        if name.endswith(".tmp"):  # a link a killed keep left
            if not _pid_alive(name.split(".")[1]):
                file.unlink(missing_ok=True)
            continue
        if name.endswith(_MAP_SUFFIX):
            if not file.with_name(name[: -len(_MAP_SUFFIX)]).exists():
                file.unlink(missing_ok=True)
            continue
        try:
            st = os.stat(file)
        except OSError:
            continue
        if st.st_nlink <= 1:
            file.unlink(missing_ok=True)
            file.with_name(name + _MAP_SUFFIX).unlink(missing_ok=True)
            freed += st.st_size
    return freed


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    return True
