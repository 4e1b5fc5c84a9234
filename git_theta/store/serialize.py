"""The bytes of one object: a msgpack header, then the payload.

    object  = msgpack({"v": 1, "dtype": str, "shape": [int], "nbytes": int, "codec": str,
                       ["hash": str], ["block": int, "zplanes": [int]]})
              payload
    codec   = "raw"      payload is the tensor's raw bytes
            | "planes"   the raw bytes cut into blocks of `block` bytes (the last may be
                         shorter); each block split into k byte planes (k = the dtype's item
                         size: plane j holds byte j of every element). Plane j is written raw
                         if j is not in `zplanes`, else as a 4-byte little-endian length and a
                         zstd frame of the plane.
    hash    = the content hash of the raw bytes (`xxh3_128:<hex>`, as in metadata); objects
              written before it existed lack it.

Splitting by byte plane is what makes float weights compress: the sign/exponent byte of
trained weights has a few bits of entropy, while mantissa bytes are noise that no compressor
shrinks. Compressing only the planes that pay (decided on a tensor's first block) keeps zstd
off the noise, so cleaning runs near memory speed.

The header's `hash` lets a read verify the tensor it decodes without a sha256 pass over the
object: a changed byte breaks the header or a frame, or changes the decoded bytes and so fails
the hash (save a bit zstd never reads, which leaves the tensor intact). Objects without it are
checked against their sha256 oid as they stream.

Encoding and decoding both stream block by block: memory stays at the tensor plus one block.
The header makes an object readable without the metadata that points at it.
"""

from __future__ import annotations

import hashlib
import io
import struct
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import msgpack
import xxhash
import zstandard

from git_theta.errors import CorruptObjectError, ObjectTooLargeError
from git_theta.limits import DEFAULT_MAX_OBJECT_BYTES, MAX_OBJECT_BYTES_KEY, checked_nbytes
from git_theta.pages import PAGE_BYTES
from git_theta.tensor import (
    HASH_PREFIX,
    BufferPool,
    RawTensor,
    allocate,
    content_hash,
    storage_itemsize,
)

if TYPE_CHECKING:
    import numpy as np

    from git_theta.pages import PagedBytes

__all__ = [
    "BLOCK_BYTES",
    "Decoded",
    "OBJECT_VERSION",
    "decode_object",
    "encode_object",
    "encode_paged",
    "read_header",
    "read_object",
]

OBJECT_VERSION = 1
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
# Objects at least this large split their planes with numpy, importing it if need be; smaller
# ones slice bytes unless numpy is already loaded (see `_numpy_pays`).
NUMPY_SPLIT_BYTES = 64 * 1024 * 1024
# Tensors smaller than this are stored raw: frame overhead outweighs any gain.
MIN_COMPRESS_BYTES = 256
# A plane is compressed only if a sample from the tensor's start shrinks by this fraction;
# otherwise every checkout would pay decompression for almost nothing.
MIN_SAVING = 0.03
# Plane bytes sampled for that decision: enough for zstd to see the distribution, a small
# fraction of the work of compressing the plane.
SAMPLE_PLANE_BYTES = 64 * 1024
# The msgpack header of any tensor we write is far smaller; a larger one is corruption.
MAX_HEADER_BYTES = 64 * 1024
_LENGTH = struct.Struct("<I")

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard contexts are not thread-safe: one per thread.
    comp = getattr(_local, "compressor", None)
    if comp is None:
        params = zstandard.ZstdCompressionParameters(**_ZSTD_PARAMS)
        comp = _local.compressor = zstandard.ZstdCompressor(compression_params=params)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def _block_size(itemsize: int) -> int:
    return BLOCK_BYTES - BLOCK_BYTES % itemsize


# Unsigned little-endian integers as wide as an element. Splitting and joining planes as
# shifts and casts on whole elements runs on numpy's SIMD loops: 2.5-6x faster than
# single-byte strided copies (~1 ms per 4 MiB block, the largest CPU cost of a checkout).
_WORDS = {2: "<u2", 4: "<u4", 8: "<u8"}


def _words(block: memoryview, itemsize: int) -> np.ndarray:
    import numpy as np  # only changed tensors get here; `git status` never needs numpy

    return np.frombuffer(block, dtype=_WORDS[itemsize])


def _fill_plane(words: np.ndarray, j: int, out: np.ndarray) -> None:
    import numpy as np

    # The cast to uint8 keeps the low byte, and happens chunk by chunk: no full-size temporary.
    np.right_shift(words, 8 * j, out=out, casting="unsafe")


def _planes(block: memoryview, itemsize: int) -> list[np.ndarray]:
    import numpy as np

    if itemsize == 1:
        return [np.frombuffer(block, dtype=np.uint8)]
    words = _words(block, itemsize)
    planes = []
    for j in range(itemsize):
        plane = np.empty(len(words), dtype=np.uint8)
        _fill_plane(words, j, plane)
        planes.append(plane)
    return planes


def _join(planes: list[np.ndarray], target: np.ndarray, scratch: np.ndarray) -> None:
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


def _scratch(n: int) -> np.ndarray:
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
        buf = _local.scratch = np.frombuffer(allocate(max(n, 3 * BLOCK_BYTES)), dtype=np.uint8)
    return buf


def _numpy_pays(nbytes: int) -> bool:
    """Whether to split planes with numpy for an object of `nbytes`. Importing numpy costs
    ~130 ms (more while the reader competes for the GIL); slicing bytes with a step does the
    same split ~3.5x slower per byte. So a commit that changed only small tensors, the
    common fine-tuning case, never loads numpy."""
    return "numpy" in sys.modules or nbytes >= NUMPY_SPLIT_BYTES


def _sliced_planes(block: memoryview, itemsize: int) -> list[bytes | memoryview]:
    """The byte planes of `block` without numpy (the same bytes as `_planes`)."""
    raw = bytes(block)
    return [raw[j::itemsize] for j in range(itemsize)]


def _choose_planes(data: memoryview, itemsize: int, with_numpy: bool) -> list[int]:
    first = data[: SAMPLE_PLANE_BYTES * itemsize]
    compressor = _compressor()
    planes: list[bytes | memoryview] = (
        [p.data for p in _planes(first, itemsize)]
        if with_numpy
        else _sliced_planes(first, itemsize)
    )
    return [
        j
        for j, plane in enumerate(planes)
        if len(compressor.compress(plane)) <= len(plane) * (1 - MIN_SAVING)
    ]


def _encode_block(
    block: memoryview, itemsize: int, zplanes: list[int], with_numpy: bool
) -> list[bytes | memoryview]:
    """The chunks of one block. Raw planes are views of this thread's scratch, valid until
    the thread encodes its next block: fresh buffers for them would cost a page fault per
    4 KiB, as much CPU as the split itself."""
    compressor = _compressor()
    if itemsize == 1:
        if not zplanes:
            return [block]
        frame = compressor.compress(block)
        return [_LENGTH.pack(len(frame)), frame]
    chunks: list[bytes | memoryview] = []
    if not with_numpy:
        for j, sliced in enumerate(_sliced_planes(block, itemsize)):
            if j in zplanes:
                frame = compressor.compress(sliced)
                chunks += (_LENGTH.pack(len(frame)), frame)
            else:
                chunks.append(sliced)
        return chunks
    words = _words(block, itemsize)
    count = len(words)
    # Raw planes in the first `len(block)` bytes, the plane being compressed after them.
    scratch = _scratch(len(block) + count)
    for j in range(itemsize):
        if j in zplanes:
            plane = scratch[len(block) : len(block) + count]
            _fill_plane(words, j, plane)
            frame = compressor.compress(plane.data)
            chunks += (_LENGTH.pack(len(frame)), frame)
        else:
            plane = scratch[j * count : (j + 1) * count]
            _fill_plane(words, j, plane)
            chunks.append(plane.data)
    return chunks


def encode_object(tensor: RawTensor, *, digest: str | None = None) -> Iterator[bytes | memoryview]:
    """The object bytes of `tensor`, as chunks to hash and write in order (deterministic for
    a given zstd version). A chunk may be reused once the next one is asked for: consume each
    (hash it, write it, copy it) before taking the next.

    Args:
        digest: `content_hash(tensor.data)` if the caller has it already (saves a pass).
    """
    data = memoryview(tensor.data).cast("B")
    block = _block_size(storage_itemsize(tensor.dtype))
    blocks = [data[start : start + block] for start in range(0, len(data), block)] or [data]
    return _encode(tensor.dtype, tensor.shape, blocks, len(data), digest or content_hash(data))


def encode_paged(
    dtype: str, shape: tuple[int, ...], data: PagedBytes, digest: str
) -> Iterator[bytes | memoryview]:
    """`encode_object` of the tensor whose bytes are in `data`, the same object bytes, read a
    page at a time: a page is exactly one block."""
    if _block_size(storage_itemsize(dtype)) != PAGE_BYTES:
        raise ValueError(f"{dtype}: pages of {PAGE_BYTES} bytes are not whole blocks")
    return _encode(dtype, shape, list(data.chunks()), data.nbytes, digest)


def _encode(
    dtype: str, shape: tuple[int, ...], blocks: list[memoryview], nbytes: int, digest: str
) -> Iterator[bytes | memoryview]:
    itemsize = storage_itemsize(dtype)
    with_numpy = _numpy_pays(nbytes)
    zplanes = (
        _choose_planes(blocks[0], itemsize, with_numpy) if nbytes >= MIN_COMPRESS_BYTES else []
    )
    header: dict[str, Any] = {
        "v": OBJECT_VERSION,
        "dtype": dtype,
        "shape": list(shape),
        "nbytes": nbytes,
        "codec": "planes" if zplanes else "raw",
        "hash": digest,
    }
    if not zplanes:
        yield msgpack.packb(header)
        yield from blocks
        return
    header.update(block=_block_size(itemsize), zplanes=zplanes)
    yield msgpack.packb(header)
    for block in blocks:
        yield from _encode_block(block, itemsize, zplanes, with_numpy)


class _Reader:
    """Reads an object's bytes exactly, hashing them as they pass while `hashing` is on."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.hashing = True
        self.size = 0

    def read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise CorruptObjectError(f"object ends {n - len(data)} bytes early")
        if self.hashing:
            self.digest.update(data)
        self.size += n
        return data

    def read_into(self, view: memoryview) -> None:
        got = self._stream.readinto(view)  # type: ignore[attr-defined]
        if got != len(view):
            raise CorruptObjectError("object ends early")
        if self.hashing:
            self.digest.update(view)
        self.size += got

    def rest(self) -> None:
        tail = self._stream.read()
        if tail:
            raise CorruptObjectError(f"object has {len(tail)} bytes after its payload")


def _read_header(reader: _Reader, stream: BinaryIO) -> dict[str, Any]:
    """The header at the stream's position, leaving the stream at the payload.

    Reads up to MAX_HEADER_BYTES in one call and seeks back to where the header ends (objects
    are read from files): feeding msgpack a byte at a time cost ~1 ms per object, 0.2 s of a
    checkout of 200 tensors.
    """
    head = stream.read(MAX_HEADER_BYTES)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_HEADER_BYTES)
    unpacker.feed(head)
    try:
        header = unpacker.unpack()
    except msgpack.OutOfData:
        if len(head) < MAX_HEADER_BYTES:
            raise CorruptObjectError(
                "object header is unreadable (the object ends inside it)"
            ) from None
        raise CorruptObjectError("object header is unreadable (too long)") from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptObjectError(f"object header is unreadable: {exc}") from None
    used = unpacker.tell()
    stream.seek(used - len(head), io.SEEK_CUR)
    reader.digest.update(head[:used])
    reader.size += used
    if not isinstance(header, dict) or header.get("v") != OBJECT_VERSION:
        raise CorruptObjectError(f"object header is not a git-theta v{OBJECT_VERSION} header")
    return header


class Decoded(NamedTuple):
    tensor: RawTensor
    sha256: str | None  # of every byte read; None when not computed
    size: int  # bytes read
    content_hash: str  # of the decoded tensor (`xxh3_128:<hex>`), computed as it decoded


def read_object(
    stream: BinaryIO,
    *,
    buffers: BufferPool | None = None,
    hash_all: bool = True,
    max_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
) -> Decoded:
    """Decode an object from `stream` (a seekable file or buffer), reading it to the end.

    Before any memory is allocated, the header must agree with the data: `nbytes` equal to
    dtype x shape, a payload that can hold `nbytes` (raw bytes exactly; byte planes no more
    than zstd's largest possible expansion, see `_min_payload`), and `nbytes` within
    `max_bytes`. An object read from a repository cannot make us allocate more than it
    could truly hold.

    Args:
        hash_all: sha256 every byte read. When False and the header carries the content
            hash, the decoded tensor is checked against that hash instead, and no sha256 is
            returned.
        max_bytes: the largest tensor an object may declare (`theta.maxObjectBytes`).
    Returns:
        The tensor, the sha256 hex of every byte read (None if not computed) and their
        count, so the caller can check them against the oid it expected, and the content
        hash of the tensor, computed block by block as it decoded (while the block is in
        cache), so the caller need not hash the tensor again.
    Raises:
        CorruptObjectError: the header, the payload or their agreement is broken, or the
            decoded bytes do not match the header's hash.
        ObjectTooLargeError: the object declares more than `max_bytes`, or more than this
            machine can allocate.
    """
    reader = _Reader(stream)
    start = stream.tell()
    stored = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    header = _read_header(reader, stream)
    try:
        dtype = header["dtype"]
        if not isinstance(dtype, str):
            raise TypeError(f"dtype is {dtype!r}")
        shape = header["shape"]
        wanted = checked_nbytes(dtype, shape)
        shape = tuple(shape)
        nbytes = header["nbytes"]
        codec = header["codec"]
        itemsize = storage_itemsize(dtype)
        expected = header.get("hash")
        if expected is not None and not isinstance(expected, str):
            raise TypeError(f"hash is {expected!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptObjectError(f"object header lacks a valid field: {exc}") from None
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or wanted != nbytes:
        raise CorruptObjectError(f"object header says {nbytes!r} bytes for {dtype} {list(shape)}")
    planes = _plane_layout(header, itemsize) if codec == "planes" else None
    if codec not in ("raw", "planes"):
        raise CorruptObjectError(f"object uses unknown codec {codec!r}")
    payload = stored - reader.size
    if planes is None and payload != nbytes:
        raise CorruptObjectError(
            f"object header declares {nbytes} raw bytes; its payload has {payload}"
        )
    if planes is not None and payload < _min_payload(nbytes, itemsize, *planes):
        raise CorruptObjectError(
            f"object header declares {nbytes} bytes, more than its {payload}-byte payload can hold"
        )
    if nbytes > max_bytes:
        raise ObjectTooLargeError(
            f"declares a tensor of {nbytes} bytes ({dtype} {list(shape)}), above "
            f"{MAX_OBJECT_BYTES_KEY} ({max_bytes}); if the tensor is genuine, raise it with "
            f"`git config {MAX_OBJECT_BYTES_KEY} <bytes>`"
        )
    reader.hashing = hash_all or expected is None
    try:
        view = buffers.take(nbytes) if buffers is not None else allocate(nbytes)
    except (MemoryError, OSError) as exc:
        raise ObjectTooLargeError(
            f"declares a tensor of {nbytes} bytes ({dtype} {list(shape)}), more than this "
            f"machine could allocate ({exc})"
        ) from None
    content = xxhash.xxh3_128()
    if planes is None:
        for begin in range(0, nbytes, BLOCK_BYTES):
            block = view[begin : begin + BLOCK_BYTES]
            reader.read_into(block)
            content.update(block)
    else:
        import numpy as np

        _read_planes(reader, *planes, np.frombuffer(view, dtype=np.uint8), itemsize, content)
    reader.rest()
    decoded = HASH_PREFIX + content.hexdigest()
    if expected is not None and decoded != expected:
        raise CorruptObjectError("its content does not match the hash in its header")
    digest = reader.digest.hexdigest() if reader.hashing else None
    return Decoded(RawTensor(dtype, shape, view), digest, reader.size, decoded)


def _plane_layout(header: dict[str, Any], itemsize: int) -> tuple[int, frozenset[int]]:
    """The `block` and `zplanes` of a planes header, checked: blocks are what the encoder
    writes (at most BLOCK_BYTES, whole elements), planes lie within an element."""
    block, zplanes = header.get("block"), header.get("zplanes")
    if (
        isinstance(block, bool)
        or not isinstance(block, int)
        or not 0 < block <= BLOCK_BYTES
        or block % itemsize
    ):
        raise CorruptObjectError(f"object block size {block!r} does not fit its dtype")
    if not isinstance(zplanes, list) or not all(
        isinstance(j, int) and not isinstance(j, bool) and 0 <= j < itemsize for j in zplanes
    ):
        raise CorruptObjectError(f"object zplanes {zplanes!r} do not fit its dtype")
    return block, frozenset(zplanes)


# The smallest zstd frame (RFC 8878): a 4-byte magic number, a 1-byte frame header descriptor
# and at least one byte of window descriptor or content size; then blocks of at most 128 KiB
# of content, each at least a 3-byte block header and one byte (an RLE block). No valid frame
# of n bytes is shorter than _ZSTD_MIN_FRAME + _ZSTD_MIN_BLOCK * ceil(n / _ZSTD_MAX_BLOCK).
_ZSTD_MIN_FRAME = 6
_ZSTD_MIN_BLOCK = 4
_ZSTD_MAX_BLOCK = 128 * 1024


def _min_payload(nbytes: int, itemsize: int, block: int, zplanes: frozenset[int]) -> int:
    """The fewest payload bytes that can decode to `nbytes` in this layout: raw planes in
    full, each compressed plane as its length and the smallest zstd frame of its size."""

    def per_block(size: int) -> int:
        plane = size // itemsize
        frame = _LENGTH.size + _ZSTD_MIN_FRAME + _ZSTD_MIN_BLOCK * -(-plane // _ZSTD_MAX_BLOCK)
        return sum(frame if j in zplanes else plane for j in range(itemsize))

    full, last = divmod(nbytes, block)
    return full * per_block(block) + (per_block(last) if last else 0)


def _read_block(
    reader: _Reader, target: np.ndarray, itemsize: int, zplanes: frozenset[int]
) -> None:
    count = len(target) // itemsize
    if itemsize == 1 and 0 not in zplanes:  # one raw plane: the bytes land in place
        reader.read_into(memoryview(target))  # type: ignore[arg-type]
        return
    # Planes go to the first len(target) bytes of scratch, the joining words after them.
    scratch = _scratch(3 * len(target))
    planes = []
    for j in range(itemsize):
        plane = scratch[j * count : (j + 1) * count]
        if j in zplanes:
            (length,) = _LENGTH.unpack(reader.read(_LENGTH.size))
            _decompress_into(reader.read(length), memoryview(plane))  # type: ignore[arg-type]
        else:
            reader.read_into(memoryview(plane))  # type: ignore[arg-type]
        planes.append(plane)
    _join(planes, target, scratch[len(target) :])


def _decompress_into(frame: bytes, out: memoryview) -> None:
    """Decompress one zstd frame that must fill `out` exactly."""
    try:
        with _decompressor().stream_reader(frame) as stream:
            got = 0
            while got < len(out) and (n := stream.readinto(out[got:])):
                got += n
            extra = stream.read(1)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(f"object payload does not decompress: {exc}") from None
    if got != len(out) or extra:
        raise CorruptObjectError("object plane decompresses to the wrong size")


def _read_planes(
    reader: _Reader,
    block: int,
    zplanes: frozenset[int],
    out: np.ndarray,
    itemsize: int,
    content: Any,
) -> None:
    for start in range(0, len(out), block):
        target = out[start : start + block]
        _read_block(reader, target, itemsize, zplanes)
        content.update(target.data)


def read_header(blob: bytes) -> dict[str, Any]:
    """The header of an object held in memory (for inspection and tests)."""
    stream = io.BytesIO(blob)
    return _read_header(_Reader(stream), stream)


def decode_object(blob: bytes) -> RawTensor:
    """Decode object bytes held in memory (checks structure and the header's hash, not the
    oid)."""
    return read_object(io.BytesIO(blob), hash_all=False).tensor
