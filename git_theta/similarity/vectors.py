"""One parameter's task vector from metadata: its revision's entry against the base's entry.

Nothing is read for an unchanged parameter (the same (hash, dtype, shape) on both sides). An
entry that is the base's entry plus updates of one structured kind keeps their structure
(similarity/terms.py); one delta (XOR) update is decoded block by block from the base's
bytes; anything else is the difference of the two rebuilt tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.compute import MERGEABLE_DTYPES, to_compute
from git_theta.metadata import ObjectRef, ParamEntry
from git_theta.similarity.terms import (
    DeltaTerm,
    Dense,
    IA3Term,
    LowRankTerm,
    SparseTerm,
    Term,
    view2d,
)
from git_theta.tensor import RawTensor
from git_theta.updates.delta import checked_diff

__all__ = ["Zero", "comparable", "suffix", "task_vector"]

Loader = Callable[[ObjectRef], RawTensor]
EntryLoader = Callable[[ParamEntry], RawTensor]


class Zero:
    """The task vector of an unchanged parameter."""

    kind = "unchanged"


def comparable(base: ParamEntry | None, entry: ParamEntry | None) -> bool:
    """Whether a task vector exists: both present, same dtype and shape, a float dtype."""
    return (
        base is not None
        and entry is not None
        and (base.dtype, base.shape) == (entry.dtype, entry.shape)
        and base.dtype in MERGEABLE_DTYPES
    )


def suffix(base: ParamEntry, entry: ParamEntry) -> tuple[Mapping[str, Any], ...] | None:
    """The updates `entry` adds to `base`, if it is `base` plus updates."""
    n = len(base.updates)
    if entry.object != base.object or len(entry.updates) < n:
        return None
    if any(dict(a) != dict(b) for a, b in zip(entry.updates[:n], base.updates, strict=True)):
        return None
    return tuple(entry.updates[n:])


def task_vector(
    base: ParamEntry, entry: ParamEntry, load: Loader, load_entry: EntryLoader
) -> Term | Zero:
    """entry - base for a comparable pair (see `comparable`)."""
    if (base.hash, base.dtype, base.shape) == (entry.hash, entry.dtype, entry.shape):
        return Zero()
    added = suffix(base, entry)
    if added:
        kinds = {u.get("type") for u in added}
        if kinds == {"low-rank"}:
            return _low_rank(base, added, load)
        if kinds == {"ia3"} and len(added) == 1:
            return _ia3(base, added[0], load, load_entry)
        if kinds == {"sparse"} and len(added) == 1:
            return _sparse(base, added[0], load, load_entry)
        if kinds == {"delta"} and len(added) == 1:
            before = load_entry(base)
            return DeltaTerm(before, checked_diff(before, added[0], load))
    return Dense.of(load_entry(entry), load_entry(base))


def _f64(tensor: RawTensor) -> np.ndarray:
    return to_compute(tensor).astype(np.float64)


def _low_rank(base: ParamEntry, added: Sequence[Mapping[str, Any]], load: Loader) -> LowRankTerm:
    """Several low-rank updates stack into one: [s1 B1, s2 B2] @ [A1; A2]."""
    bs, as_ = [], []
    for record in added:
        a = _f64(load(ObjectRef.parse(record["a"], where="low-rank update field a")))
        b = _f64(load(ObjectRef.parse(record["b"], where="low-rank update field b")))
        b = b * float(record["scale"])
        if record.get("transpose"):
            a, b = b.T, a.T  # (b a)^T = a^T b^T
        bs.append(b)
        as_.append(a)
    term = LowRankTerm(np.concatenate(bs, axis=1), np.concatenate(as_, axis=0))
    if term.shape != view2d(base.shape):
        raise ValueError(f"low-rank factors make {term.shape}, the parameter is {base.shape}")
    return term


def _ia3(
    base: ParamEntry, record: Mapping[str, Any], load: Loader, load_entry: EntryLoader
) -> IA3Term:
    vector = _f64(load(ObjectRef.parse(record["vector"], where="ia3 update field vector")))
    scale = vector.reshape(-1) - 1.0
    axis = int(record["axis"])
    shape = base.shape
    rows, cols = view2d(shape)
    if axis == 0:
        row_scale, col_scale = scale, np.ones(cols)
    else:
        stride = int(np.prod(shape[axis + 1 :], dtype=np.int64))
        col_scale = scale[(np.arange(cols) // stride) % shape[axis]]
        row_scale = np.ones(rows)
    return IA3Term(to_compute(load_entry(base)).reshape(rows, cols), row_scale, col_scale)


def _sparse(
    base: ParamEntry, record: Mapping[str, Any], load: Loader, load_entry: EntryLoader
) -> SparseTerm:
    idx_t = load(ObjectRef.parse(record["indices"], where="sparse update field indices"))
    values = load(ObjectRef.parse(record["values"], where="sparse update field values"))
    idx = np.frombuffer(idx_t.data, "<i4" if idx_t.dtype == "I32" else "<i8").astype(np.int64)
    before = _f64(load_entry(base)).reshape(-1)
    delta = _f64(values).reshape(-1) - before[idx]
    order = np.argsort(idx, kind="stable")
    return SparseTerm(idx[order], delta[order], view2d(base.shape))
