"""Between stored tensors and the float arrays strategies compute on.

Floats widen exactly to float32 (bf16 is the top half of a float32; fp8 through the tables in
diffing/numeric.py); F64 stays float64 so no precision is lost. Results go back to the
parameter's dtype: F16/F32/F64 by numpy's round-to-nearest-even, BF16 by round-to-nearest-even
of the float32 bits. fp8 and complex results cannot be cast exactly here, and integers and
booleans are never averaged: parameters of those dtypes stay conflicts unless a strategy picks a
side whole.
"""

from __future__ import annotations

import numpy as np

from git_theta.diffing.numeric import to_float64
from git_theta.tensor import RawTensor

__all__ = ["MERGEABLE_DTYPES", "from_compute", "to_compute"]

MERGEABLE_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_NATIVE = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}


def to_compute(tensor: RawTensor) -> np.ndarray:
    """The tensor's values as float32 (float64 for F64), in its shape."""
    if tensor.dtype not in MERGEABLE_DTYPES:
        raise ValueError(f"dtype {tensor.dtype} cannot be merged numerically")
    if tensor.dtype == "F64":
        return np.frombuffer(tensor.data, "<f8").astype(np.float64).reshape(tensor.shape)
    if tensor.dtype == "F32":
        return np.frombuffer(tensor.data, "<f4").astype(np.float32).reshape(tensor.shape)
    return to_float64(tensor).astype(np.float32).reshape(tensor.shape)


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """bf16 bit patterns of float32 values, rounded to nearest even; NaN stays a quiet NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits.astype(np.uint64) + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) & 0x8000).astype(np.uint16) | np.uint16(0x7FC0)
    return out


def from_compute(values: np.ndarray, dtype: str) -> RawTensor:
    """`values` cast to `dtype` as a RawTensor (little-endian, C order)."""
    shape = tuple(int(d) for d in values.shape)
    if dtype == "BF16":
        return RawTensor(dtype, shape, bf16_bits(values).astype("<u2").tobytes())
    if dtype not in _NATIVE:
        raise ValueError(f"dtype {dtype} cannot be merged numerically")
    return RawTensor(dtype, shape, np.ascontiguousarray(values, dtype=_NATIVE[dtype]).tobytes())
