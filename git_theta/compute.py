"""Between stored tensors and the float arrays merges and updates compute on.

A neutral module: merge strategies (merges/) and update types (updates/) both use it, and
neither package imports the other for it.

Floats widen exactly to float32 (bf16 is the top half of a float32; fp8 through the tables in
diffing/numeric.py); F64 stays float64 so no precision is lost. Results go back to the
parameter's dtype: F16/F32/F64 by numpy's round-to-nearest-even, BF16 by round-to-nearest-even
of the float32 bits. fp8 and complex results cannot be cast exactly here, and integers and
booleans are never averaged: parameters of those dtypes stay conflicts unless a strategy picks a
side whole.
"""

from __future__ import annotations

import numpy as np

from git_theta.tensor import RawTensor

__all__ = ["MERGEABLE_DTYPES", "from_compute", "to_compute"]

MERGEABLE_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_NATIVE = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
# Elements per step of the bf16 rounding (its uint64 temporaries stay a few MiB).
_CHUNK_ELEMENTS = 1 << 20


def to_compute(tensor: RawTensor) -> np.ndarray:
    """The tensor's values as float32 (float64 for F64), in its shape.

    F32 and F64 come back as a view of `tensor.data` (read-only when the data is): merges
    hold several sides of the largest tensor at once, and a copy of each would double that.
    F16 and BF16 are widened exactly, without a float64 intermediate.
    """
    if tensor.dtype not in MERGEABLE_DTYPES:
        raise ValueError(f"dtype {tensor.dtype} cannot be merged numerically")
    if tensor.dtype in ("F32", "F64"):
        return np.frombuffer(tensor.data, _NATIVE[tensor.dtype]).reshape(tensor.shape)
    if tensor.dtype == "F16":
        return np.frombuffer(tensor.data, "<f2").astype(np.float32).reshape(tensor.shape)
    # bf16 is the upper half of a float32: widen the bit patterns in place.
    bits = np.empty(len(memoryview(tensor.data).cast("B")) // 2, dtype=np.uint32)
    bits[...] = np.frombuffer(tensor.data, "<u2")
    bits <<= 16
    return bits.view(np.float32).reshape(tensor.shape)


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """bf16 bit patterns of float32 values, rounded to nearest even; NaN stays a quiet NaN."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    out = np.empty(flat.size, dtype=np.uint16)
    for start in range(0, flat.size, _CHUNK_ELEMENTS):  # chunks: no full-size temporaries
        stop = min(flat.size, start + _CHUNK_ELEMENTS)
        out[start:stop] = _bf16_chunk(flat[start:stop])
    return out.reshape(np.shape(values))


def _bf16_chunk(values: np.ndarray) -> np.ndarray:
    bits = values.view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits.astype(np.uint64) + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) & 0x8000).astype(np.uint16) | np.uint16(0x7FC0)
    return out


def from_compute(values: np.ndarray, dtype: str) -> RawTensor:
    """`values` cast to `dtype` as a RawTensor (little-endian, C order). The data is a
    memoryview of a new array, or of `values` itself when it already has that layout."""
    shape = tuple(int(d) for d in values.shape)
    if dtype == "BF16":
        return RawTensor(dtype, shape, bf16_bits(values).data.cast("B"))
    if dtype not in _NATIVE:
        raise ValueError(f"dtype {dtype} cannot be merged numerically")
    array = np.ascontiguousarray(values, dtype=_NATIVE[dtype])
    return RawTensor(dtype, shape, array.reshape(-1).data.cast("B"))
