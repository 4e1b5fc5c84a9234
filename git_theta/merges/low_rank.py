"""Merging low-rank updates of one base without leaving low rank.

When every side of a conflict is the merge base's entry plus low-rank updates only, and the
strategy is linear in the task vectors (base + sum_i c_i (theta_i - base): average, task
arithmetic), the result is the base plus one low-rank update whose factors are the sides'
factors side by side: A = [A_1; A_2; ...] (stacked rows), B = [c_1 s_1 B_1, c_2 s_2 B_2, ...]
(stacked columns, each block scaled by its coefficient and its update's scale). So the merge
commit stores rank r_1 + r_2 + ... factors instead of a dense tensor.

Exact in the sense of the representation: no SVD or truncation; the rebuild is base +
B @ A in float32, rounded once, where a dense merge rounds each side's rebuild first (the two
agree within the rounding of the dtype). When the stacked rank would cost as much as the
dense tensor, or the sides are not of that form, the caller merges densely.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from git_theta.metadata import ObjectRef, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash
from git_theta.updates import numeric
from git_theta.updates.low_rank import low_rank_record
from git_theta.updates.rebuild import rebuild

__all__ = ["merge_low_rank"]


def _suffix(base: ParamEntry, side: ParamEntry) -> tuple[dict, ...] | None:
    """The updates `side` adds to `base`, if it is `base` plus updates."""
    n = len(base.updates)
    if side.object != base.object or tuple(map(dict, side.updates[:n])) != tuple(
        map(dict, base.updates)
    ):
        return None
    return tuple(dict(u) for u in side.updates[n:])


def merge_low_rank(
    base: ParamEntry,
    sides: Sequence[ParamEntry],
    coefficients: Sequence[float],
    store: ObjectStore,
) -> ParamEntry | None:
    """base + sum_i c_i (side_i - base) as base plus one stacked low-rank update, or None when
    the sides are not base + low-rank updates (or dense would be smaller)."""
    if not numeric.numeric(base.dtype) or len(base.shape) != 2:
        return None
    blocks: list[tuple[float, dict]] = []
    for side, c in zip(sides, coefficients, strict=True):
        suffix = _suffix(base, side)
        if suffix is None or any(u["type"] != "low-rank" for u in suffix):
            return None
        blocks.extend((c, u) for u in suffix)
    if not blocks or len({bool(u.get("transpose")) for _, u in blocks}) != 1:
        return None
    a_parts, b_parts = [], []
    for c, u in blocks:
        a = store.load_tensor(_ref(u["a"]))
        b = store.load_tensor(_ref(u["b"]))
        a_parts.append(numeric.to_compute(a).astype(np.float32))
        b_parts.append(numeric.to_compute(b).astype(np.float32) * np.float32(c * u["scale"]))
    a_all, b_all = np.concatenate(a_parts, axis=0), np.concatenate(b_parts, axis=1)
    rank = a_all.shape[0]
    if rank * (a_all.shape[1] + b_all.shape[0]) * 4 >= base.nbytes:
        return None
    refs = [
        store.put(encode_object(RawTensor("F32", tuple(m.shape), m.astype("<f4").tobytes())))
        for m in (a_all, b_all)
    ]
    record = low_rank_record(
        refs[0], refs[1], 1.0, transpose=bool(blocks[0][1].get("transpose")), tolerance=1.0
    )
    entry = ParamEntry(base.dtype, base.shape, "", base.object, (*base.updates, record))
    tensor = rebuild(entry, store.load_tensor)
    return ParamEntry(
        entry.dtype, entry.shape, content_hash(tensor.data), entry.object, entry.updates
    )


def _ref(value: dict) -> ObjectRef:
    return ObjectRef.parse(value, where="low-rank update field")
