"""Byte planes: the codec primitives shared by encoding and decoding objects
(git_theta/store/serialize.py describes the format).

A block of k-byte elements splits into k planes (plane j holds byte j of every element) and
joins back; zstd contexts and a work buffer are kept per thread. A plane that is mostly zero
(the high planes of an XOR delta) may be written masked: the bitmap of its nonzero bytes and
those bytes, each a zstd frame.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

import zstandard

from git_theta.tensor import allocate

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    import numpy as np

# zstd's "fast" strategy with a 64-entry hash table and 7-byte minimum matches. A byte plane of
# float weights has almost no repeats worth a match; what shrinks it is the Huffman coding of
# its literals. Level 1's larger table and 5-byte matches spend time finding short, costly
# matches: on exponent planes these settings compress 2.5-3x faster, decompress ~2.5x faster
# and come out ~8% smaller (0.34 vs 0.37 of the plane). target_length stays 0: above it zstd
# stops Huffman-coding literals in this strategy.
_ZSTD_PARAMS = {
    "strategy": zstandard.STRATEGY_FAST,
    "window_log": 17,
    "hash_log": 6,
    "chain_log": 6,
    "search_log": 1,
    "min_match": 7,
    "target_length": 0,
}
# 4 MiB blocks: large enough for zstd to model a plane, small enough to bound the extra copy.
BLOCK_BYTES = 4 * 1024 * 1024
# A compressed plane is written as this length, then its zstd frame.
LENGTH = struct.Struct("<I")

_local = threading.local()


def compressor() -> zstandard.ZstdCompressor:
    # zstandard contexts are not thread-safe: one per thread.
    comp = getattr(_local, "compressor", None)
    if comp is None:
        params = zstandard.ZstdCompressionParameters(**_ZSTD_PARAMS)
        comp = _local.compressor = zstandard.ZstdCompressor(compression_params=params)
    return comp


def decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def frame_bound(n: int) -> int:
    """The largest zstd frame zstd writes for `n` bytes (ZSTD_COMPRESSBOUND in zstd.h)."""
    small = (128 * 1024 - n) >> 11 if n < 128 * 1024 else 0
    return n + (n >> 8) + small


def block_size(itemsize: int) -> int:
    return BLOCK_BYTES - BLOCK_BYTES % itemsize


# Unsigned little-endian integers as wide as an element. Splitting and joining planes as
# shifts and casts on whole elements runs on numpy's SIMD loops: 2.5-6x faster than
# single-byte strided copies (~1 ms per 4 MiB block, the largest CPU cost of a checkout).
_WORDS = {2: "<u2", 4: "<u4", 8: "<u8"}


def element_words(block: memoryview, itemsize: int) -> np.ndarray:
    import numpy as np  # only changed tensors get here; `git status` never needs numpy

    return np.frombuffer(block, dtype=_WORDS[itemsize])


def fill_plane(words: np.ndarray, j: int, out: np.ndarray) -> None:
    import numpy as np

    # The cast to uint8 keeps the low byte, and happens chunk by chunk: no full-size temporary.
    np.right_shift(words, 8 * j, out=out, casting="unsafe")


def split_planes(block: memoryview, itemsize: int) -> list[np.ndarray]:
    import numpy as np

    if itemsize == 1:
        return [np.frombuffer(block, dtype=np.uint8)]
    words = element_words(block, itemsize)
    planes = []
    for j in range(itemsize):
        plane = np.empty(len(words), dtype=np.uint8)
        fill_plane(words, j, plane)
        planes.append(plane)
    return planes


def join_planes(planes: list[np.ndarray], target: np.ndarray, scratch: np.ndarray) -> None:
    """Interleave byte planes into `target` (uint8): pairs of planes become 16-bit words,
    pairs of those 32-bit words, and so on up to the element width. The intermediate words
    are carved from `scratch` (uint8, at least twice the size of `target`)."""
    import numpy as np

    level = planes
    width = 1
    free = 0  # first unused byte of scratch
    while len(level) > 1:
        width *= 2
        dtype = np.dtype(_WORDS[width])
        merged = []
        for low, high in zip(level[0::2], level[1::2], strict=True):
            if len(level) == 2:
                out = target.view(dtype)
            else:
                size = len(low) * width
                out = scratch[free : free + size].view(dtype)
                free += size
            np.left_shift(high, 4 * width, out=out, dtype=dtype)
            np.bitwise_or(out, low, out=out)
            merged.append(out)
        level = merged
    if width == 1:
        target[:] = level[0]


def scratch_buffer(n: int) -> np.ndarray:
    """This thread's reusable work buffer, at least `n` bytes (uint8): for the planes of a
    block being decoded and the words that join them, and for a plane about to be compressed.

    Fresh buffers for each block cost a page fault per 4 KiB (the allocator hands freed heap
    back to the kernel), a third of a checkout's CPU; one buffer per thread, reused, costs none.
    Nothing in it outlives the call that filled it.
    """
    import numpy as np

    buf = getattr(_local, "scratch", None)
    if buf is None or len(buf) < n:
        # Room for the largest block at once; pages never touched cost nothing.
        buf = _local.scratch = np.frombuffer(allocate(max(n, 4 * BLOCK_BYTES)), dtype=np.uint8)
    return buf


def sliced_planes(block: memoryview, itemsize: int) -> list[bytes | memoryview]:
    """The byte planes of `block` without numpy (the same bytes as `split_planes`)."""
    raw = bytes(block)
    return [raw[j::itemsize] for j in range(itemsize)]


def masked_frames(plane: np.ndarray) -> list[bytes]:
    """A plane written masked: the length and zstd frame of the bitmap of its nonzero bytes
    (numpy's packbits order: 8 bytes to a bitmap byte, the first in its high bit), then the
    length and frame of those bytes in order.

    zstd codes a plane that is 90% zero bytes at about 400 MB/s and to 0.155 of its size: each
    nonzero byte ends a match, and literals cost at least one bit. The bitmap leaves zstd only
    dense bytes to code: the plane comes out 0.09-0.10 of its size and the whole XOR object
    encodes about 1.9x faster (an XOR delta's top plane after a step of r = 0.05, the
    benchmark's full fine-tune; docs/updates.md)."""
    import numpy as np

    comp = compressor()
    nonzero = plane != 0
    bits = comp.compress(np.packbits(nonzero).data)
    values = comp.compress(np.compress(nonzero, plane).data)
    return [LENGTH.pack(len(bits)), bits, LENGTH.pack(len(values)), values]


def masked_size(plane: np.ndarray) -> int:
    return sum(len(chunk) for chunk in masked_frames(plane))


def mask_positions(bits: np.ndarray, count: int) -> np.ndarray:
    """Where a masked plane of `count` bytes has its nonzero bytes, from its bitmap (`bits`,
    decompressed), in order."""
    import numpy as np

    # As bools: nonzero() on a bool array is ~5x faster than on the same bytes as uint8.
    return np.flatnonzero(np.unpackbits(bits, count=count).view(np.bool_))


def encode_block(
    block: memoryview,
    itemsize: int,
    zplanes: list[int],
    with_numpy: bool,
    mplanes: Collection[int] = (),
) -> list[bytes | memoryview]:
    """The chunks of one block (`mplanes`: planes written masked, only `with_numpy`). Raw
    planes are views of this thread's scratch, valid until the thread encodes its next block:
    fresh buffers for them would cost a page fault per 4 KiB, as much CPU as the split
    itself."""
    comp = compressor()
    if itemsize == 1:
        if not zplanes:
            return [block]
        frame = comp.compress(block)
        return [LENGTH.pack(len(frame)), frame]
    chunks: list[bytes | memoryview] = []
    if not with_numpy:
        for j, sliced in enumerate(sliced_planes(block, itemsize)):
            if j in zplanes:
                frame = comp.compress(sliced)
                chunks += (LENGTH.pack(len(frame)), frame)
            else:
                chunks.append(sliced)
        return chunks
    words = element_words(block, itemsize)
    count = len(words)
    # Raw planes in the first `len(block)` bytes, the plane being compressed after them.
    scratch = scratch_buffer(len(block) + count)
    for j in range(itemsize):
        if j in mplanes:
            plane = scratch[len(block) : len(block) + count]
            fill_plane(words, j, plane)
            chunks += masked_frames(plane)
        elif j in zplanes:
            plane = scratch[len(block) : len(block) + count]
            fill_plane(words, j, plane)
            frame = comp.compress(plane.data)
            chunks += (LENGTH.pack(len(frame)), frame)
        else:
            plane = scratch[j * count : (j + 1) * count]
            fill_plane(words, j, plane)
            chunks.append(plane.data)
    return chunks


def encode_blocks(
    blocks: list[memoryview],
    itemsize: int,
    zplanes: list[int],
    with_numpy: bool,
    helper: Executor | None = None,
    mplanes: Collection[int] = (),
) -> Iterator[bytes | memoryview]:
    """The chunks of `blocks`, in order. With `helper` (an executor with one thread), every
    other block is encoded there while this thread encodes the one before it: two cores on
    one large object, where its encoding would otherwise run alone. Each thread's raw planes
    are views of its own scratch, valid until it encodes its next block, so the helper gets
    its next block only once the chunks of its last one were taken."""
    if helper is None or len(blocks) < 2:
        for block in blocks:
            yield from encode_block(block, itemsize, zplanes, with_numpy, mplanes)
        return
    for i in range(0, len(blocks), 2):
        ahead: Future[list[bytes | memoryview]] | None = None
        if i + 1 < len(blocks):
            ahead = helper.submit(
                encode_block, blocks[i + 1], itemsize, zplanes, with_numpy, mplanes
            )
        try:
            yield from encode_block(blocks[i], itemsize, zplanes, with_numpy, mplanes)
        finally:
            # Never leave the helper writing its scratch behind a caller that gave up.
            chunks = ahead.result() if ahead is not None else []
        yield from chunks
