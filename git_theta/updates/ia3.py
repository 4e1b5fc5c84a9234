"""IA3 updates: W' = W * v, the vector scaling one axis (rows for attention-style targets,
columns for feed-forward ones, PEFT's `ia3_l` of shape (out, 1) or (1, in)); a 1-D parameter
(the bias PEFT scales with the same vector) has axis 0.

Computed in float32 and rounded once; `slack` allows tolerance * eps(dtype) * |W'| for a tensor
merged elsewhere (PEFT multiplies in the weight's dtype, one rounding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from git_theta.errors import MetadataError
from git_theta.metadata import ObjectRef
from git_theta.tensor import RawTensor
from git_theta.updates import numeric
from git_theta.updates.base import Loader, UpdateType, object_ref

__all__ = ["IA3", "ia3_record"]

DEFAULT_TOLERANCE = 1.0


def ia3_record(vector: ObjectRef, axis: int, *, tolerance: float) -> dict[str, Any]:
    return {
        "type": "ia3",
        "axis": int(axis),
        "tolerance": float(tolerance),
        "vector": vector.to_json(),
    }


def _scaled(before: RawTensor, record: Mapping[str, Any], load: Loader) -> np.ndarray:
    vector = load(object_ref(record, "vector"))
    if not numeric.numeric(vector.dtype):
        raise MetadataError(f"an IA3 vector of dtype {vector.dtype} is not a float vector")
    axis = record["axis"]
    if not isinstance(axis, int) or not 0 <= axis < len(before.shape):
        raise MetadataError(f"an IA3 update's axis {axis!r} does not fit shape {before.shape}")
    if vector.shape not in (
        (before.shape[axis],),
        (before.shape[axis], 1),
        (1, before.shape[axis]),
    ):
        raise MetadataError(
            f"an IA3 vector of shape {vector.shape} cannot scale axis {axis} of {before.shape}"
        )
    shape = [1] * len(before.shape)
    shape[axis] = before.shape[axis]
    base = numeric.to_compute(before)
    v = numeric.to_compute(vector).astype(base.dtype).reshape(shape)
    return base * v


class IA3(UpdateType):
    name = "ia3"
    summary = "a learned vector scaling the rows or columns: W * v"

    def apply(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> RawTensor:
        return numeric.from_compute(_scaled(before, record, load), before.dtype)

    def slack(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> np.ndarray:
        scaled = np.abs(_scaled(before, record, load).astype(np.float64))
        tolerance = float(record.get("tolerance", DEFAULT_TOLERANCE))
        return tolerance * numeric.eps(before.dtype) * scaled
