"""Writing a checkpoint whose layout is known up front: every worker decodes tensors and
writes each straight to its offset in the file (`os.pwrite`), in any order.

The stream path (`Format.join`) hands tensors to one writer in file order, so one core
writes while the others wait for its buffer to drain. Here the file is sized first, its head
written, and each worker decodes a tensor into a pooled buffer, checks its hash (as every
read does), writes it at its place and takes the next. At most one job per worker is out at
a time and each holds one tensor's buffer while it writes, so memory is about
`workers x` the largest tensor plus the buffer pool's free list, whatever the file's size.
Nothing is mapped: the process may run under a `ulimit -v` smaller than the file.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING

from git_theta.context import RepoContext
from git_theta.errors import FileWriteError
from git_theta.formats.base import Placement
from git_theta.metadata import ParamEntry
from git_theta.progress import with_progress
from git_theta.smudge import batches, progress_label
from git_theta.tensor import BufferPool

if TYPE_CHECKING:
    from git_theta.kept import Kept

__all__ = ["SerialWrites", "write_placed"]

# posix_fallocate's errors that mean "this file system cannot reserve space" (then a sparse
# ftruncate sizes the file); anything else (ENOSPC) is the answer and is raised.
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})


def write_placed(
    ctx: RepoContext,
    params: Mapping[str, ParamEntry],
    placement: Placement,
    fd: int,
    *,
    path: str,
    reuse: Kept | None = None,
) -> None:
    """Write the checkpoint `placement` describes to the empty file open as `fd`.

    Tensors are copied from `reuse` (the previous checkpoint at this path, kept.py) when it
    holds them with the same hash, else rebuilt with `ctx.rebuild`, on `ctx.pool`. On an error (a missing or corrupt
    object, a full disk) the jobs not started are cancelled and those running are waited
    for before it is raised, so no worker writes to `fd` once this returns.
    """
    with _naming(path):
        _reserve(fd, placement.size)
        _pwrite_all(fd, placement.head, 0)
    offsets = placement.offsets
    order = sorted(offsets, key=offsets.__getitem__)
    buffers = BufferPool()

    write_at = SerialWrites(fd)

    def decode_and_write(names: list[str]) -> None:
        for name in names:
            if reuse is not None:
                with _naming(path):
                    if reuse.copy(params[name], write_at, offsets[name]):
                        continue
            tensor = ctx.rebuild(params[name], path, repr(name), buffers)
            with _naming(path):
                write_at(tensor.data, offsets[name])
            buffers.give(tensor.data)

    def written() -> Iterator[int]:
        running: dict[Future[None], int] = {}
        jobs = batches(params, order)
        try:
            while True:
                while len(running) < ctx.workers and (job := next(jobs, None)) is not None:
                    running[ctx.pool.submit(decode_and_write, job[1])] = job[0]
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    fut.result()
                    yield running.pop(fut)
        finally:
            for fut in running:
                fut.cancel()
            wait(running)  # a running job must not write to `fd` after the caller closes it

    total = sum(params[name].nbytes for name in order)
    for _ in with_progress(written(), label=progress_label(path), total=total, size=int):
        pass


def _reserve(fd: int, size: int) -> None:
    """Give the file its final size, its blocks reserved where the file system can (the blocks
    are not scattered by two writers). A size the disk cannot hold is not reserved: ext4
    allocates until the disk is full before it says ENOSPC, which would starve every other
    writer until the file goes. The file is then sized sparse, so that an object declaring
    more than it holds is reported as such when it is decoded, and a real shortage fails at
    the first write that finds no room."""
    if size and hasattr(os, "posix_fallocate") and size <= _free_bytes(fd):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE and exc.errno not in (errno.ENOSPC, errno.EFBIG):
                raise
    os.ftruncate(fd, size)


def _free_bytes(fd: int) -> int:
    st = os.fstatvfs(fd)
    return st.f_bavail * st.f_frsize


class SerialWrites:
    """`pwrite`s to one file, one at a time. ext4 (like most file systems) holds the inode's
    lock for the whole of a buffered write, and a second writer spins on it rather than
    sleeping: measured with perf on a 1 GiB checkout, 29% of the CPU was that spin
    (`rwsem_spin_on_owner`) and 37% the copy itself. Waiting on our own lock instead sleeps,
    and leaves the core to a worker that is decoding."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def __call__(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        with self._lock:
            _pwrite_all(self._fd, data, offset)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


@contextmanager
def _naming(path: str) -> Iterator[None]:
    """A failed write (a full disk, a file size limit) as one line naming the checkpoint."""
    try:
        yield
    except OSError as exc:
        raise FileWriteError(
            f"{path}: cannot write the checkpoint: {exc.strerror or exc}"
        ) from None
