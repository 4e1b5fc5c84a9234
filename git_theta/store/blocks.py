"""An object's blocks decoded one at a time and in any order, into buffers the caller owns.

An update taken against a parameter's snapshot (git_theta/updates/snapshot.py) needs the
snapshot's bytes a block at a time, next to the same block of the new version: decoding the
whole snapshot first costs a buffer as large as the tensor (on this class of machine a page
fault per 4 KiB, 0.1 s of a 256 MiB add) and a pass over memory that no longer fits in cache.
The choice between dense, sparse and delta also needs a few blocks from across the tensor
before any other: `decode` finds a block by walking the length prefixes of the planes before
it (a few bytes read per plane), not by decoding them.

The caller hashes the blocks it decoded, in order, and `verify` compares the hash with the
one the header records; an object without one is not read this way.
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, BinaryIO

from git_theta.errors import CorruptObjectError
from git_theta.store.header import Layout, Reader, check_header, read_stream_header
from git_theta.store.planes import BLOCK_BYTES, LENGTH, frame_bound
from git_theta.store.serialize import decode_block, read_planes
from git_theta.tensor import allocate

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ObjectBlocks", "block_buffer"]

_local = threading.local()


def block_buffer() -> memoryview:
    """This thread's buffer of one block, to decode into and use before the next decode: a
    block decoded there is still in cache when the caller reads it."""
    buf: memoryview | None = getattr(_local, "block", None)
    if buf is None:
        buf = _local.block = allocate(BLOCK_BYTES)
    return buf


class ObjectBlocks:
    """The blocks of the object in `stream` (seekable, at the object's first byte)."""

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        self._stream = stream
        start = stream.tell()
        self._end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
        reader = Reader(stream)
        reader.hashing = False
        header = read_stream_header(reader, stream)
        self.layout: Layout = check_header(header, self._end - start - reader.size, max_bytes)
        self._payload = start + reader.size
        planes = self.layout.planes
        self.block = planes.block if planes is not None else BLOCK_BYTES
        self.count = -(-self.layout.nbytes // self.block) if self.layout.nbytes else 0
        self._starts: list[int] | None = None

    def size(self, index: int) -> int:
        """Bytes of block `index` once decoded (the last may be short)."""
        return min(self.block, self.layout.nbytes - index * self.block)

    def decode(self, index: int, out: memoryview) -> None:
        """Decode block `index` into `out` (exactly `size(index)` bytes, writable)."""
        if len(out) != self.size(index):
            raise ValueError(f"block {index} has {self.size(index)} bytes, not {len(out)}")
        self._stream.seek(self._offsets()[index])
        reader = Reader(self._stream)
        reader.hashing = False
        planes = self.layout.planes
        if planes is None:
            reader.read_into(out)
        else:
            decode_block(reader, planes, self.layout.itemsize, out)

    def planes(self, index: int, out: np.ndarray, work: np.ndarray) -> list[np.ndarray]:
        """Block `index`'s byte planes, not joined (serialize.read_planes: `out` holds them,
        `work` the frames); only for a planes payload of elements wider than a byte."""
        planes = self.layout.planes
        if planes is None or self.layout.itemsize < 2:
            raise ValueError("only a planes payload of multi-byte elements has planes to read")
        self._stream.seek(self._offsets()[index])
        reader = Reader(self._stream)
        reader.hashing = False
        return read_planes(reader, planes, self.layout.itemsize, out, work)

    def verify(self, digest: str) -> None:
        """Raise CorruptObjectError unless `digest` (the content hash of every block, in
        order) is the one the header records."""
        if self.layout.expected is None or digest != self.layout.expected:
            raise CorruptObjectError("its content does not match the hash in its header")

    def _offsets(self) -> list[int]:
        """Where each block's bytes start, found once from the planes' length prefixes; a
        prefix no frame of its plane could have, or a payload that does not end where the last
        block does, is corruption."""
        if self._starts is not None:
            return self._starts
        planes, itemsize = self.layout.planes, self.layout.itemsize
        starts, at = [], self._payload
        for index in range(self.count):
            starts.append(at)
            size = self.size(index)
            if planes is None:
                at += size
                continue
            plane = size // itemsize
            for j in range(itemsize):
                if j in planes.mplanes:
                    at = self._skip_frame(at, -(-plane // 8))
                    at = self._skip_frame(at, plane)
                elif j in planes.zplanes:
                    at = self._skip_frame(at, plane)
                else:
                    at += plane
        if at != self._end:
            raise CorruptObjectError("its payload does not end where its last block does")
        self._starts = starts
        return starts

    def _skip_frame(self, at: int, size: int) -> int:
        """The offset after the length-prefixed frame at `at` of a plane of `size` bytes."""
        self._stream.seek(at)
        prefix = self._stream.read(LENGTH.size)
        if len(prefix) != LENGTH.size:
            raise CorruptObjectError("object ends early")
        (length,) = LENGTH.unpack(prefix)
        if length > frame_bound(size) or at + LENGTH.size + length > self._end:
            raise CorruptObjectError(
                f"object plane frame of {length} bytes does not fit its plane or its payload"
            )
        return at + LENGTH.size + int(length)
