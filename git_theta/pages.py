"""Tensor bytes read in fixed-size pages that are used again and again.

A fresh buffer costs a page fault per 4 KiB the first time it is written: on a 2-core VM, filling
a new 152 MiB buffer from the page cache takes 0.15 s, filling one already touched 0.03 s. When
the clean filter reads a checkpoint into one buffer per tensor, the buffers grow with the
tensors and most of them are fresh. Read into 4 MiB pages instead, a tensor is hashed page by
page and its pages go back to the pool: after the first tensors, nothing is fresh. Only a tensor
that changed and is stored as an update needs its bytes in one piece (`PagedBytes.join`); a
dense object is encoded page by page (a page is one encoder block, so the object is the same).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import BinaryIO

import xxhash

from git_theta.errors import CheckpointError
from git_theta.tensor import HASH_PREFIX, BufferPool, allocate

__all__ = [
    "PAGE_BYTES",
    "RUN_BYTES",
    "SMALL_BYTES",
    "PagePool",
    "PagedBytes",
    "read_pages",
    "split_run",
]

# One encoder block (git_theta/store/serialize.py BLOCK_BYTES) and a multiple of every item size.
PAGE_BYTES = 4 * 1024 * 1024
# A tensor smaller than this is read into a buffer of its own size, never a pooled page: a
# checkpoint of 20,000 tiny tensors would otherwise hold a 4 MiB mapping for each one in flight
# (the in-flight budget counts tensor bytes). Small buffers cost no page faults worth pooling.
SMALL_BYTES = 256 * 1024
# Consecutive small tensors are read together, up to this many bytes a read (`split_run`).
RUN_BYTES = 1024 * 1024


class PagePool:
    """Pages of PAGE_BYTES handed back for reuse. Thread-safe. It keeps every page given back:
    the pages in use at once are bounded by the reader and its in-flight budget, so the pool
    never holds more than the peak already did."""

    def __init__(self) -> None:
        self._free: list[memoryview] = []
        self._lock = threading.Lock()

    def take(self) -> memoryview:
        with self._lock:
            if self._free:
                return self._free.pop()
        return allocate(PAGE_BYTES)

    def give(self, pages: list[memoryview]) -> None:
        with self._lock:
            # A small tensor's own buffer is not a page: only whole pages are handed out again.
            self._free.extend(p for p in pages if len(p) == PAGE_BYTES)


class PagedBytes:
    """The raw bytes of one tensor as a list of pages (each full but the last)."""

    __slots__ = ("_hash", "_pages", "_pool", "nbytes")

    def __init__(
        self, pages: list[memoryview], nbytes: int, pool: PagePool, digest: str | None = None
    ) -> None:
        self._pages = pages
        self._pool = pool
        self.nbytes = nbytes
        self._hash = digest

    def __len__(self) -> int:
        return self.nbytes

    @property
    def pool(self) -> PagePool:
        """The pool its pages came from (and go back to)."""
        return self._pool

    def chunks(self) -> Iterator[memoryview]:
        """The bytes in order, one page each."""
        left = self.nbytes
        for page in self._pages:
            yield page[: min(left, PAGE_BYTES)]
            left -= PAGE_BYTES

    def content_hash(self) -> str:
        """Equal to `git_theta.tensor.content_hash` of the joined bytes (xxh3 streams)."""
        if self._hash is None:
            digest = xxhash.xxh3_128()
            for chunk in self.chunks():
                digest.update(chunk)
            self._hash = HASH_PREFIX + digest.hexdigest()
        return self._hash

    def join(self, buffers: BufferPool | None = None) -> memoryview:
        """The bytes in one buffer (a copy); the pages stay valid until `release`."""
        out = buffers.take(self.nbytes) if buffers is not None else allocate(self.nbytes)
        at = 0
        for chunk in self.chunks():
            out[at : at + len(chunk)] = chunk
            at += len(chunk)
        return out

    def release(self) -> None:
        """Give the pages back; the bytes must not be used afterwards."""
        pages, self._pages = self._pages, []
        self._pool.give(pages)


def read_pages(stream: BinaryIO, n: int, pool: PagePool, *, source: str, what: str) -> PagedBytes:
    """Read exactly `n` bytes into pages, or raise CheckpointError saying the file is truncated
    in `what` (the pages taken so far go back to the pool).

    Each page is hashed as soon as it is full, while it is still in the CPU cache: ~0.08 s per
    GiB less than hashing the tensor from memory afterwards.
    """
    pages: list[memoryview] = []
    digest = xxhash.xxh3_128()
    got = 0
    try:
        while got < n:
            page = pool.take() if n >= SMALL_BYTES else memoryview(bytearray(n))
            pages.append(page)
            want = min(PAGE_BYTES, n - got)
            filled = 0
            while filled < want:
                k = stream.readinto(page[filled:want])  # type: ignore[attr-defined]
                if not k:
                    raise CheckpointError(
                        f"{source}: truncated checkpoint: {what} needs {n} bytes, "
                        f"the file ends after {got + filled}"
                    )
                filled += k
            digest.update(page[:want])
            got += filled
    except BaseException:
        pool.give(pages)
        raise
    return PagedBytes(pages, n, pool, HASH_PREFIX + digest.hexdigest())


def split_run(buf: memoryview, sizes: list[int], pool: PagePool) -> list[PagedBytes]:
    """The consecutive small tensors of `sizes` bytes that `buf` holds, each hashed on its own
    (they share the buffer). Reading them with one read instead of one each matters: a read
    releases the GIL and must win it back from the worker threads, and one read per tiny
    tensor made a checkpoint of 20,000 of them wait on the GIL most of its time (issue 14)."""
    out, at = [], 0
    for n in sizes:
        view = buf[at : at + n]
        at += n
        out.append(PagedBytes([view], n, pool, HASH_PREFIX + xxhash.xxh3_128_hexdigest(view)))
    return out
