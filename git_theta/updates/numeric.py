"""Float helpers the update types share: widening, casting back, rounding allowances.

The computation is fixed: widen exactly to float32 (float64 for F64), compute, round once to the
parameter's dtype (round-to-nearest-even). Only the float dtypes numpy can compute on exactly
take numeric updates; others are stored dense or as sparse (bit-exact) updates.
"""

from __future__ import annotations

import numpy as np

from git_theta.compute import from_compute, to_compute
from git_theta.tensor import RawTensor

__all__ = ["NUMERIC_DTYPES", "eps", "from_compute", "numeric", "to_compute", "within"]

NUMERIC_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
# The spacing of the dtype's numbers at 1.0: one rounding moves a value by at most half of this,
# relative to its magnitude.
_EPS = {"F16": 2.0**-10, "BF16": 2.0**-7, "F32": 2.0**-23, "F64": 2.0**-52}


def eps(dtype: str) -> float:
    return _EPS[dtype]


def numeric(dtype: str) -> bool:
    return dtype in NUMERIC_DTYPES


def within(tensor: RawTensor, reference: RawTensor, slack: np.ndarray) -> bool:
    """Whether `tensor` equals `reference` element by element up to `slack` (NaN matches NaN)."""
    if tensor.dtype != reference.dtype or tensor.shape != reference.shape:
        return False
    a = to_compute(tensor).astype(np.float64)
    b = to_compute(reference).astype(np.float64)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= slack
    close |= (a == b) | (np.isnan(a) & np.isnan(b))
    return bool(close.all())


def max_abs_difference(tensor: RawTensor, reference: RawTensor) -> float:
    a = to_compute(tensor).astype(np.float64)
    b = to_compute(reference).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(np.abs(a - b))) if a.size else 0.0
