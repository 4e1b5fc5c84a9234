"""The bytes of one object: a msgpack header, then the payload.

    object  = msgpack({"v": 1 | 2, "dtype": str, "shape": [int], "nbytes": int, "codec": str,
                       ["hash": str], ["block": int, "zplanes": [int], ["mplanes": [int]]]})
              payload
    codec   = "raw"      payload is the tensor's raw bytes
            | "planes"   the raw bytes cut into blocks of `block` bytes (the last may be
                         shorter); each block split into k byte planes (k = the dtype's item
                         size: plane j holds byte j of every element). Plane j is written raw
                         if j is not in `zplanes`, else as a 4-byte little-endian length and a
                         zstd frame of the plane. Plane j in `mplanes` (version 2 only, and
                         only there) is written masked: a 4-byte length and a zstd frame of
                         the bitmap of its nonzero bytes (numpy's packbits order), then a
                         4-byte length and a zstd frame of those bytes in order.
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

import io
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import msgpack
import xxhash
import zstandard

from git_theta.errors import CorruptObjectError, ObjectTooLargeError
from git_theta.limits import DEFAULT_MAX_OBJECT_BYTES
from git_theta.pages import PAGE_BYTES
from git_theta.store.header import (
    MASKED_VERSION,
    MAX_HEADER_BYTES,
    OBJECT_VERSION,
    Planes,
    Reader,
    check_header,
    read_stream_header,
)
from git_theta.store.planes import (
    BLOCK_BYTES,
    LENGTH,
    block_size,
    compressor,
    decompressor,
    encode_blocks,
    frame_bound,
    join_planes,
    mask_positions,
    masked_size,
    scratch_buffer,
    sliced_planes,
    split_planes,
)
from git_theta.tensor import (
    HASH_PREFIX,
    BufferPool,
    RawTensor,
    allocate,
    content_hash,
    storage_itemsize,
)

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

    from git_theta.pages import PagedBytes

__all__ = [
    "BLOCK_BYTES",
    "MAX_HEADER_BYTES",
    "Decoded",
    "OBJECT_VERSION",
    "choose_codings",
    "choose_planes",
    "decode_block",
    "decode_object",
    "encode_object",
    "encode_paged",
    "read_header",
    "read_object",
    "read_planes",
]

# Objects at least this large split their planes with numpy, importing it if need be; smaller
# ones slice bytes unless numpy is already loaded (see `_numpy_pays`).
NUMPY_SPLIT_BYTES = 64 * 1024 * 1024
# Tensors smaller than this are stored raw: frame overhead outweighs any gain.
MIN_COMPRESS_BYTES = 256
# A plane is compressed only if a sample from the tensor's start shrinks by this fraction;
# otherwise every checkout would pay decompression for almost nothing.
MIN_SAVING = 0.03
# A mostly-zero plane is written masked if its sample comes out at least this fraction smaller
# than as one zstd frame: the mask also spares the encoder zstd's slowest input, but its decode
# (a scatter of the nonzero bytes) is no faster than zstd's, so a checkout gains nothing below.
MASKED_GAIN = 0.1
# Plane bytes sampled for that decision: enough for zstd to see the distribution, a small
# fraction of the work of compressing the plane.
SAMPLE_PLANE_BYTES = 64 * 1024


def _numpy_pays(nbytes: int) -> bool:
    """Whether to split planes with numpy for an object of `nbytes`. Importing numpy costs
    ~130 ms (more while the reader competes for the GIL); slicing bytes with a step does the
    same split ~3.5x slower per byte. So a commit that changed only small tensors, the
    common fine-tuning case, never loads numpy."""
    return "numpy" in sys.modules or nbytes >= NUMPY_SPLIT_BYTES


def choose_planes(data: memoryview, itemsize: int, *, min_saving: float = MIN_SAVING) -> list[int]:
    """The planes of an object of bytes `data` worth compressing: those a sample from its
    start shrinks by `min_saving` (a fraction) or more."""
    return _choose_planes(data, itemsize, _numpy_pays(len(data)), min_saving)


def _choose_planes(
    data: memoryview, itemsize: int, with_numpy: bool, min_saving: float = MIN_SAVING
) -> list[int]:
    planes: list[bytes | memoryview] = (
        [p.data for p in split_planes(_sample(data, itemsize), itemsize)]
        if with_numpy
        else sliced_planes(_sample(data, itemsize), itemsize)
    )
    comp = compressor()
    return [
        j
        for j, plane in enumerate(planes)
        if _pays(len(comp.compress(plane)), len(plane), min_saving)
    ]


def _sample(data: memoryview, itemsize: int) -> memoryview:
    """The bytes whose planes decide how an object's planes are coded: its start."""
    return data[: SAMPLE_PLANE_BYTES * itemsize]


def _pays(coded: int, plane: int, min_saving: float) -> bool:
    return coded <= plane * (1 - min_saving)


def choose_codings(
    data: memoryview, itemsize: int, *, min_saving: float = MIN_SAVING
) -> tuple[list[int], list[int]]:
    """`choose_planes`, and which of the planes worth coding are better masked (`zplanes`,
    `mplanes`): those mostly zero whose masked sample is at least MASKED_GAIN smaller than
    its zstd frame. Needs numpy; planes of one-byte elements are never masked."""
    import numpy as np

    comp = compressor()
    zplanes: list[int] = []
    mplanes: list[int] = []
    for j, plane in enumerate(split_planes(_sample(data, itemsize), itemsize)):
        zsize = len(comp.compress(plane.data))
        masked = (
            masked_size(plane)
            if itemsize > 1 and np.count_nonzero(plane) * 2 <= len(plane)
            else None
        )
        if masked is not None and _pays(masked, zsize, MASKED_GAIN):
            if _pays(masked, len(plane), min_saving):
                mplanes.append(j)
        elif _pays(zsize, len(plane), min_saving):
            zplanes.append(j)
    return zplanes, mplanes


def encode_object(
    tensor: RawTensor,
    *,
    digest: str | None = None,
    zplanes: list[int] | None = None,
    helper: Executor | None = None,
    mplanes: list[int] | None = None,
) -> Iterator[bytes | memoryview]:
    """The object bytes of `tensor`, as chunks to hash and write in order (deterministic for
    a given zstd version). A chunk may be reused once the next one is asked for: consume each
    (hash it, write it, copy it) before taking the next.

    Args:
        digest: `content_hash(tensor.data)` if the caller has it already (saves a pass).
        zplanes: the planes to compress, chosen by the caller (a pack's members share the
            choice of its first one: sampling costs more than encoding a tiny tensor).
        helper: a one-thread executor that encodes every other block (`encode_blocks`).
        mplanes: planes to write masked (with `zplanes`, from `choose_codings`).
    """
    data = memoryview(tensor.data).cast("B")
    block = block_size(storage_itemsize(tensor.dtype))
    blocks = [data[start : start + block] for start in range(0, len(data), block)] or [data]
    digest = digest or content_hash(data)
    return _encode(
        tensor.dtype, tensor.shape, blocks, len(data), digest, zplanes, helper, mplanes or []
    )


def encode_paged(
    dtype: str,
    shape: tuple[int, ...],
    data: PagedBytes,
    digest: str,
    zplanes: list[int] | None = None,
    helper: Executor | None = None,
    mplanes: list[int] | None = None,
) -> Iterator[bytes | memoryview]:
    """`encode_object` of the tensor whose bytes are in `data`, the same object bytes, read a
    page at a time: a page is exactly one block."""
    if block_size(storage_itemsize(dtype)) != PAGE_BYTES:
        raise ValueError(f"{dtype}: pages of {PAGE_BYTES} bytes are not whole blocks")
    blocks = list(data.chunks())
    return _encode(dtype, shape, blocks, data.nbytes, digest, zplanes, helper, mplanes)


def _encode(
    dtype: str,
    shape: tuple[int, ...],
    blocks: list[memoryview],
    nbytes: int,
    digest: str,
    chosen: list[int] | None,
    helper: Executor | None = None,
    mplanes: list[int] | None = None,
) -> Iterator[bytes | memoryview]:
    itemsize = storage_itemsize(dtype)
    mplanes = mplanes if mplanes and nbytes >= MIN_COMPRESS_BYTES and itemsize > 1 else []
    with_numpy = bool(mplanes) or _numpy_pays(nbytes)
    zplanes = (
        []
        if nbytes < MIN_COMPRESS_BYTES
        else chosen
        if chosen is not None
        else _choose_planes(blocks[0], itemsize, with_numpy)
    )
    zplanes = [j for j in zplanes if j not in mplanes]  # a masked plane is coded only so
    header: dict[str, Any] = {
        "v": MASKED_VERSION if mplanes else OBJECT_VERSION,
        "dtype": dtype,
        "shape": list(shape),
        "nbytes": nbytes,
        "codec": "planes" if zplanes or mplanes else "raw",
        "hash": digest,
    }
    if not zplanes and not mplanes:
        yield msgpack.packb(header)
        yield from blocks
        return
    header.update(block=block_size(itemsize), zplanes=zplanes)
    if mplanes:
        header["mplanes"] = mplanes
    yield msgpack.packb(header)
    yield from encode_blocks(blocks, itemsize, zplanes, with_numpy, helper, mplanes)


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
    than zstd's largest possible expansion, see `min_payload`), and `nbytes` within
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
    reader = Reader(stream)
    start = stream.tell()
    stored = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    header = read_stream_header(reader, stream)
    dtype, shape, nbytes, itemsize, expected, planes = check_header(
        header, stored - reader.size, max_bytes
    )
    reader.hashing = hash_all or expected is None
    view = _allocate(buffers, nbytes, dtype, shape)
    content = xxhash.xxh3_128()
    if planes is None:
        for begin in range(0, nbytes, BLOCK_BYTES):
            block = view[begin : begin + BLOCK_BYTES]
            reader.read_into(block)
            content.update(block)
    else:
        for begin in range(0, nbytes, planes.block):
            block = view[begin : begin + planes.block]
            decode_block(reader, planes, itemsize, block)
            content.update(block)
    reader.rest()
    decoded = HASH_PREFIX + content.hexdigest()
    if expected is not None and decoded != expected:
        raise CorruptObjectError("its content does not match the hash in its header")
    digest = reader.digest.hexdigest() if reader.hashing else None
    return Decoded(RawTensor(dtype, shape, view), digest, reader.size, decoded)


def _allocate(
    buffers: BufferPool | None, nbytes: int, dtype: str, shape: tuple[int, ...]
) -> memoryview:
    try:
        return buffers.take(nbytes) if buffers is not None else allocate(nbytes)
    except (MemoryError, OSError) as exc:
        raise ObjectTooLargeError(
            f"declares a tensor of {nbytes} bytes ({dtype} {list(shape)}), more than this "
            f"machine could allocate ({exc})"
        ) from None


def _frame_length(reader: Reader, size: int) -> int:
    """The length of the next zstd frame, if a frame of `size` bytes could be that long (a
    length no such frame has fails before anything is read)."""
    (length,) = LENGTH.unpack(reader.read(LENGTH.size))
    if length > frame_bound(size):
        raise CorruptObjectError(
            f"object plane frame of {length} bytes is larger than zstd writes for {size} bytes"
        )
    return int(length)


def _read_frame(reader: Reader, area: np.ndarray, size: int) -> memoryview:
    """The next length-prefixed zstd frame (`_frame_length`), read into `area`."""
    frame = memoryview(area[: _frame_length(reader, size)])  # type: ignore[arg-type]
    reader.read_into(frame)
    return frame


def _read_masked(reader: Reader, plane: np.ndarray, area: np.ndarray) -> None:
    """A masked plane into `plane`; `area` (at least `2 * len(plane) + frame_bound(len(plane))`
    bytes) holds the frames, the bitmap and the nonzero bytes meanwhile."""
    count = len(plane)
    bits = area[: -(-count // 8)]
    frames = area[2 * count :]
    _decompress_into(_read_frame(reader, frames, len(bits)), memoryview(bits))  # type: ignore[arg-type]
    where = mask_positions(bits, count)
    # The values frame must hold exactly as many bytes as the bitmap has set bits.
    values = area[count : count + len(where)]
    _decompress_into(_read_frame(reader, frames, len(where)), memoryview(values))  # type: ignore[arg-type]
    plane.fill(0)
    plane[where] = values


def _read_block(reader: Reader, target: np.ndarray, itemsize: int, planes: Planes) -> None:
    # Planes go to the first len(target) bytes of scratch, the joining words after them, and
    # the compressed frame being read after those: no allocation per frame, and a frame length
    # no zstd frame of the plane could have fails before anything is read.
    n = len(target)
    scratch = scratch_buffer(3 * n + frame_bound(n // itemsize))
    joined = read_planes(reader, planes, itemsize, scratch[:n], scratch[n:])
    join_planes(joined, target, scratch[n : 3 * n])


def read_planes(
    reader: Reader, planes: Planes, itemsize: int, out: np.ndarray, work: np.ndarray
) -> list[np.ndarray]:
    """The planes of the next block of a planes payload, not joined: plane j of the block's
    `len(out) // itemsize` elements into `out[j * count : (j + 1) * count]` (uint8). `work`
    (at least `2 * len(out) + frame_bound(count)` bytes) holds frames meanwhile."""
    count = len(out) // itemsize
    frame_area = work[2 * len(out) :]
    joined = []
    for j in range(itemsize):
        plane = out[j * count : (j + 1) * count]
        if j in planes.mplanes:
            _read_masked(reader, plane, work)
        elif j in planes.zplanes:
            frame = _read_frame(reader, frame_area, count)
            _decompress_into(frame, memoryview(plane))  # type: ignore[arg-type]
        else:
            reader.read_into(memoryview(plane))  # type: ignore[arg-type]
        joined.append(plane)
    return joined


def decode_block(reader: Reader, planes: Planes, itemsize: int, out: memoryview) -> None:
    """The next block of a planes payload, decoded into `out` (the block's bytes, a writable
    view). A one-byte-wide tensor has one plane, nothing to join, and needs no numpy (the
    layout a finisher reads is such a tensor; importing numpy cost a `git add` 75 ms)."""
    if itemsize > 1:
        import numpy as np

        _read_block(reader, np.frombuffer(out, dtype=np.uint8), itemsize, planes)
    elif 0 in planes.zplanes:
        frame = bytearray(_frame_length(reader, len(out)))
        reader.read_into(memoryview(frame))
        _decompress_into(memoryview(frame), out)
    else:
        reader.read_into(out)


def _decompress_into(frame: memoryview, out: memoryview) -> None:
    """Decompress one zstd frame that must fill `out` exactly (zstd is handed the whole frame
    in one read)."""
    try:
        with decompressor().stream_reader(frame, read_size=max(1, len(frame))) as stream:
            got = 0
            while got < len(out) and (n := stream.readinto(out[got:])):
                got += n
            extra = stream.read(1)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(f"object payload does not decompress: {exc}") from None
    if got != len(out) or extra:
        raise CorruptObjectError("object plane decompresses to the wrong size")


def read_header(blob: bytes) -> dict[str, Any]:
    """The header of an object held in memory (for inspection and tests)."""
    stream = io.BytesIO(blob)
    return read_stream_header(Reader(stream), stream)


def decode_object(blob: bytes) -> RawTensor:
    """Decode object bytes held in memory (checks structure and the header's hash, not the
    oid)."""
    return read_object(io.BytesIO(blob), hash_all=False).tensor
