"""The bytes of one object: a msgpack header, then the (optionally compressed) payload.

    object  = msgpack({"v": 1, "dtype": str, "shape": [int], "codec": str, "nbytes": int})
              payload
    codec   = "raw"          payload is the tensor's raw bytes
            | "zstd"         one zstd frame of the raw bytes
            | "zstd-group"   one zstd frame of the raw bytes, byte-grouped block by block: each
                             block of GROUP_BLOCK bytes (the last may be shorter) is rewritten
                             as all first bytes of its elements, then all second bytes, ...
                             Float exponents then sit together and compress.

The header makes an object readable without the metadata that points at it. Encoding streams
block by block, so memory stays at the tensor plus one block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import zstandard

from git_theta.errors import CorruptObjectError
from git_theta.tensor import DTYPE_SIZES, FLOAT_DTYPES, RawTensor

__all__ = ["GROUP_BLOCK", "OBJECT_VERSION", "decode_object", "encode_object", "read_header"]

OBJECT_VERSION = 1
# Level 1: on float weights higher levels gain ~1% of size for 2-3x the time.
ZSTD_LEVEL = 1
# 4 MiB: large enough for zstd to find structure, small enough to bound the extra copy.
GROUP_BLOCK = 4 * 1024 * 1024
# Below this a payload is stored raw: zstd's frame overhead outweighs any gain.
MIN_COMPRESS_BYTES = 256
# Compression is kept only when the first block saves this fraction; otherwise every checkout
# would pay decompression for almost nothing (random int8 or fp8 data).
MIN_SAVING = 0.03

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


def _grouped_blocks(data: memoryview, itemsize: int) -> Iterator[bytes]:
    for start in range(0, len(data), GROUP_BLOCK):
        block = np.frombuffer(data[start : start + GROUP_BLOCK], dtype=np.uint8)
        yield block.reshape(-1, itemsize).T.tobytes()


def _ungroup(data: bytes, itemsize: int) -> bytearray:
    out = bytearray(len(data))
    for start in range(0, len(data), GROUP_BLOCK):
        block = np.frombuffer(
            data, dtype=np.uint8, count=min(GROUP_BLOCK, len(data) - start), offset=start
        )
        np.frombuffer(out, dtype=np.uint8, count=len(block), offset=start)[:] = block.reshape(
            itemsize, -1
        ).T.ravel()
    return out


def _choose_codec(tensor: RawTensor, data: memoryview) -> str:
    itemsize = DTYPE_SIZES[tensor.dtype]
    if len(data) < MIN_COMPRESS_BYTES:
        return "raw"
    codec = "zstd-group" if tensor.dtype in FLOAT_DTYPES and itemsize > 1 else "zstd"
    sample = data[:GROUP_BLOCK]
    probe = next(_grouped_blocks(sample, itemsize)) if codec == "zstd-group" else sample
    if len(_compressor().compress(probe)) > len(sample) * (1 - MIN_SAVING):
        return "raw"
    return codec


def encode_object(tensor: RawTensor) -> Iterator[bytes]:
    """The object bytes of `tensor`, as chunks to hash and write in order (deterministic for
    a given zstd version)."""
    data = memoryview(tensor.data).cast("B")
    codec = _choose_codec(tensor, data)
    yield msgpack.packb(
        {
            "v": OBJECT_VERSION,
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "codec": codec,
            "nbytes": len(data),
        }
    )
    if codec == "raw":
        yield data  # type: ignore[misc]
        return
    chunker = _compressor().chunker(size=len(data), chunk_size=GROUP_BLOCK)
    blocks = (
        _grouped_blocks(data, DTYPE_SIZES[tensor.dtype])
        if codec == "zstd-group"
        else (data[i : i + GROUP_BLOCK] for i in range(0, len(data), GROUP_BLOCK))
    )
    for block in blocks:
        yield from chunker.compress(block)
    yield from chunker.finish()


def read_header(blob: bytes | memoryview) -> tuple[dict[str, Any], int]:
    """The object's header and the offset where its payload starts."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(blob[:4096])
    try:
        header = unpacker.unpack()
    except (msgpack.OutOfData, ValueError, msgpack.UnpackException) as exc:
        raise CorruptObjectError(f"object header is unreadable: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != OBJECT_VERSION:
        raise CorruptObjectError(f"object header is not a git-theta v{OBJECT_VERSION} header")
    return header, unpacker.tell()


def decode_object(blob: bytes) -> RawTensor:
    """Rebuild the tensor from object bytes, checking the payload against the header."""
    header, offset = read_header(blob)
    try:
        dtype, shape, codec, nbytes = (
            header["dtype"],
            tuple(header["shape"]),
            header["codec"],
            header["nbytes"],
        )
        itemsize = DTYPE_SIZES[dtype]
    except (KeyError, TypeError) as exc:
        raise CorruptObjectError(f"object header lacks a valid field: {exc}") from None
    payload = memoryview(blob)[offset:]
    data: bytes | bytearray
    if codec == "raw":
        data = payload.tobytes()
    elif codec in ("zstd", "zstd-group"):
        try:
            data = _decompressor().decompress(payload, max_output_size=nbytes)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(f"object payload does not decompress: {exc}") from None
        if codec == "zstd-group" and len(data) == nbytes and nbytes % itemsize == 0:
            data = _ungroup(data, itemsize)
    else:
        raise CorruptObjectError(f"object uses unknown codec {codec!r}")
    tensor = RawTensor(dtype, shape, data)
    if len(data) != nbytes or tensor.nbytes != nbytes:
        raise CorruptObjectError(
            f"object payload holds {len(data)} bytes, its header promises {nbytes}"
        )
    return tensor
