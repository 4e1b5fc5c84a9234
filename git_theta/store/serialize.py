"""The bytes of one object: a msgpack header, then the payload.

    object  = msgpack({"v": 1, "dtype": str, "shape": [int], "nbytes": int, "codec": str,
                       ["block": int, "zplanes": [int]]})
              payload
    codec   = "raw"      payload is the tensor's raw bytes
            | "planes"   the raw bytes cut into blocks of `block` bytes (the last may be
                         shorter); each block split into k byte planes (k = the dtype's item
                         size: plane j holds byte j of every element). Plane j is written raw
                         if j is not in `zplanes`, else as a 4-byte little-endian length and a
                         zstd frame of the plane.

Splitting by byte plane is what makes float weights compress: the sign/exponent byte of
trained weights has a few bits of entropy (zstd takes it to ~37%), while mantissa bytes are
noise that no compressor shrinks. Compressing only the planes that pay (decided on a tensor's
first block) keeps zstd off the noise, so cleaning runs near memory speed.

Encoding and decoding both stream block by block: memory stays at the tensor plus one block.
The header makes an object readable without the metadata that points at it.
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import msgpack
import zstandard

from git_theta.errors import CorruptObjectError
from git_theta.tensor import DTYPE_SIZES, BufferPool, RawTensor, allocate

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BLOCK_BYTES",
    "OBJECT_VERSION",
    "decode_object",
    "encode_object",
    "read_header",
    "read_object",
]

OBJECT_VERSION = 1
# Level 1: on exponent planes higher levels gain little and cost 1.5-3x the time.
ZSTD_LEVEL = 1
# 4 MiB blocks: large enough for zstd to model a plane, small enough to bound the extra copy.
BLOCK_BYTES = 4 * 1024 * 1024
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
    # zstandard contexts are not thread-safe: one per worker thread.
    comp = getattr(_local, "compressor", None)
    if comp is None:
        comp = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def _block_size(itemsize: int) -> int:
    return BLOCK_BYTES - BLOCK_BYTES % itemsize


def _planes(block: memoryview, itemsize: int) -> list[np.ndarray]:
    import numpy as np  # only changed tensors get here; `git status` never needs numpy

    raw = np.frombuffer(block, dtype=np.uint8)
    if itemsize == 1:
        return [raw]
    # Single-byte strided copies run at memory speed and release the GIL.
    return [raw[j::itemsize].copy() for j in range(itemsize)]


def _choose_planes(data: memoryview, itemsize: int) -> list[int]:
    first = data[: SAMPLE_PLANE_BYTES * itemsize]
    compressor = _compressor()
    return [
        j
        for j, plane in enumerate(_planes(first, itemsize))
        if len(compressor.compress(plane.data)) <= plane.nbytes * (1 - MIN_SAVING)
    ]


def encode_object(tensor: RawTensor) -> Iterator[bytes | memoryview]:
    """The object bytes of `tensor`, as chunks to hash and write in order (deterministic for
    a given zstd version)."""
    data = memoryview(tensor.data).cast("B")
    itemsize = DTYPE_SIZES[tensor.dtype]
    zplanes = _choose_planes(data, itemsize) if len(data) >= MIN_COMPRESS_BYTES else []
    header: dict[str, Any] = {
        "v": OBJECT_VERSION,
        "dtype": tensor.dtype,
        "shape": list(tensor.shape),
        "nbytes": len(data),
        "codec": "planes" if zplanes else "raw",
    }
    if not zplanes:
        yield msgpack.packb(header)
        yield data
        return
    block = _block_size(itemsize)
    header.update(block=block, zplanes=zplanes)
    yield msgpack.packb(header)
    compressor = _compressor()
    for start in range(0, len(data), block):
        for j, plane in enumerate(_planes(data[start : start + block], itemsize)):
            if j in zplanes:
                frame = compressor.compress(plane.data)
                yield _LENGTH.pack(len(frame))
                yield frame
            else:
                yield plane.data


class _Reader:
    """Reads an object's bytes exactly, hashing them as they pass."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise CorruptObjectError(f"object ends {n - len(data)} bytes early")
        self.digest.update(data)
        self.size += n
        return data

    def read_into(self, view: memoryview) -> None:
        got = self._stream.readinto(view)  # type: ignore[attr-defined]
        if got != len(view):
            raise CorruptObjectError("object ends early")
        self.digest.update(view)
        self.size += got

    def rest(self) -> None:
        tail = self._stream.read()
        if tail:
            raise CorruptObjectError(f"object has {len(tail)} bytes after its payload")


def _read_header(reader: _Reader, stream: BinaryIO) -> dict[str, Any]:
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_HEADER_BYTES)
    while True:
        byte = stream.read(1)
        if not byte:
            raise CorruptObjectError("object header is unreadable (the object ends inside it)")
        reader.digest.update(byte)
        reader.size += 1
        unpacker.feed(byte)
        try:
            header = unpacker.unpack()
            break
        except msgpack.OutOfData:
            if reader.size > MAX_HEADER_BYTES:
                raise CorruptObjectError("object header is unreadable (too long)") from None
        except (ValueError, msgpack.UnpackException) as exc:
            raise CorruptObjectError(f"object header is unreadable: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != OBJECT_VERSION:
        raise CorruptObjectError(f"object header is not a git-theta v{OBJECT_VERSION} header")
    return header


def read_object(
    stream: BinaryIO, *, buffers: BufferPool | None = None
) -> tuple[RawTensor, str, int]:
    """Decode an object from `stream`, reading it to the end.

    Returns:
        The tensor, the sha256 hex of every byte read and their count, so the caller can
        check them against the oid it expected.
    Raises:
        CorruptObjectError: the header, the payload or their agreement is broken.
    """
    reader = _Reader(stream)
    header = _read_header(reader, stream)
    try:
        dtype = header["dtype"]
        shape = tuple(int(d) for d in header["shape"])
        nbytes = int(header["nbytes"])
        codec = header["codec"]
        itemsize = DTYPE_SIZES[dtype]
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptObjectError(f"object header lacks a valid field: {exc}") from None
    if RawTensor(dtype, shape, b"").nbytes != nbytes:
        raise CorruptObjectError(f"object header says {nbytes} bytes for {dtype} {list(shape)}")
    view = buffers.take(nbytes) if buffers is not None else allocate(nbytes)
    if codec == "raw":
        reader.read_into(view)
    elif codec == "planes":
        import numpy as np

        _read_planes(reader, header, np.frombuffer(view, dtype=np.uint8), itemsize)
    else:
        raise CorruptObjectError(f"object uses unknown codec {codec!r}")
    reader.rest()
    return RawTensor(dtype, shape, view), reader.digest.hexdigest(), reader.size


def _read_planes(reader: _Reader, header: dict[str, Any], out: np.ndarray, itemsize: int) -> None:
    try:
        block = int(header["block"])
        zplanes = {int(j) for j in header["zplanes"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptObjectError(f"object header lacks a valid field: {exc}") from None
    if block <= 0 or block % itemsize:
        raise CorruptObjectError(f"object block size {block} does not fit its dtype")
    import numpy as np

    decompressor = _decompressor()
    for start in range(0, len(out), block):
        target = out[start : start + block]
        count = len(target) // itemsize
        for j in range(itemsize):
            if j in zplanes:
                (length,) = _LENGTH.unpack(reader.read(_LENGTH.size))
                try:
                    plane = decompressor.decompress(reader.read(length), max_output_size=count)
                except zstandard.ZstdError as exc:
                    raise CorruptObjectError(f"object payload does not decompress: {exc}") from None
                if len(plane) != count:
                    raise CorruptObjectError("object plane decompresses to the wrong size")
                target[j::itemsize] = np.frombuffer(plane, dtype=np.uint8)
            elif itemsize == 1:
                reader.read_into(memoryview(target))  # type: ignore[arg-type]
            else:
                target[j::itemsize] = np.frombuffer(reader.read(count), dtype=np.uint8)


def read_header(blob: bytes) -> dict[str, Any]:
    """The header of an object held in memory (for inspection and tests)."""
    stream = io.BytesIO(blob)
    return _read_header(_Reader(stream), stream)


def decode_object(blob: bytes) -> RawTensor:
    """Decode object bytes held in memory (checks structure, not the oid)."""
    return read_object(io.BytesIO(blob))[0]
