"""Tiny checkpoints built in the test, never downloaded."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

__all__ = [
    "ALL_DTYPES",
    "random_params",
    "read_safetensors",
    "safetensors_bytes",
    "write_safetensors",
]

# Every safetensors dtype git-theta supports, with the numpy type used to make its raw bytes
# (bf16 and fp8 have none: random bits of the right width stand in).
ALL_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "F8_E4M3": "u1",
    "F8_E5M2": "u1",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
    "BOOL": "bool",
}


def random_array(dtype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    np_type = np.dtype(ALL_DTYPES[dtype])
    if dtype in ("F64", "F32", "F16"):
        return (rng.standard_normal(shape) * 0.02).astype(np_type)
    if dtype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype == "BF16":
        f = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16)
    info = np.iinfo(np_type)
    return rng.integers(info.min, info.max, shape, dtype=np_type, endpoint=True)


def random_params(
    shapes: dict[str, tuple[str, tuple[int, ...]]], seed: int = 0
) -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        name: (dtype, random_array(dtype, shape, rng)) for name, (dtype, shape) in shapes.items()
    }


def safetensors_bytes(
    params: dict[str, tuple[str, np.ndarray]],
    *,
    metadata: dict[str, str] | None = None,
    pad: bool = True,
) -> bytes:
    """A safetensors file built by hand (any dtype, header order as given), as bytes."""
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name, (dtype, array) in params.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_safetensors(
    path: Path,
    params: dict[str, tuple[str, np.ndarray]],
    *,
    metadata: dict[str, str] | None = None,
    pad: bool = True,
) -> bytes:
    """Write a safetensors file by hand (any dtype, header order as given); returns its bytes."""
    content = safetensors_bytes(params, metadata=metadata, pad=pad)
    path.write_bytes(content)
    return content


def read_safetensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """A safetensors file as `write_safetensors` takes it (bf16 as uint16 bit patterns)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        data = raw[8 + n + start : 8 + n + end]
        array = np.frombuffer(data, dtype=np.dtype(ALL_DTYPES[info["dtype"]])).copy()
        out[name] = (info["dtype"], array.reshape(info["shape"]))
    return out
