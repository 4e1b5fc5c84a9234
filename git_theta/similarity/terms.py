"""Task vectors of one parameter in their stored structure, and exact inner products of them.

A parameter's task vector is its version in a revision minus its version in the base. When
the revision's entry is the base's entry plus updates, the task vector keeps the updates'
structure and no m x n array is ever made for it:

  - low-rank: tau = B @ A (the scale folded into B, a transposed record turned round), so
    <B1 A1, B2 A2>_F = sum((B1^T B2) * (A1 A2^T)) costs O(r1 r2 (m + n));
  - IA3: tau = W * (v - 1) along one axis, W the base tensor: read row block by row block;
  - sparse: tau = values - W[indices] at the indices only;
  - delta (a full fine-tune stored as the XOR of bit patterns): the values are needed, so it
    is dense, but decoded a block of rows at a time from the base's bytes and the XOR
    object's: the fine-tuned tensor is never rebuilt whole.

Anything else (a new dense object, mixed chains) is the difference of the two tensors, read
a block of rows at a time. Arithmetic is float64. Tensors are viewed as 2-D: (first axis,
the rest), a 1-D tensor as a column.

The task vector of a low-rank or IA3 update is the update's exact value, before the rebuild
rounds base + update to the parameter's dtype (that rounding is at most half a unit in the
last place of the weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from git_theta.compute import to_compute
from git_theta.tensor import RawTensor, storage_itemsize
from git_theta.updates.delta import xor

__all__ = [
    "BLOCK",
    "Dense",
    "DeltaTerm",
    "IA3Term",
    "LowRankTerm",
    "SparseTerm",
    "Term",
    "inner",
    "view2d",
]

# Elements per block of rows a dense or IA3 term is read in (float64: 2 MiB per array).
BLOCK = 1 << 18


def view2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view of a shape: (first axis, product of the rest); a 1-D shape is a column."""
    if not shape:
        return (1, 1)
    return (shape[0], math.prod(shape[1:]))


def _wide(tensor: RawTensor) -> np.ndarray:
    rows, cols = view2d(tensor.shape)
    return to_compute(tensor).reshape(rows, cols)


def _row_blocks(rows: int, cols: int) -> Iterator[slice]:
    step = max(1, BLOCK // max(cols, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


class Term:
    """A task vector of one parameter in the 2-D view `shape`."""

    kind = ""
    shape: tuple[int, int]

    def block(self, rows: slice) -> np.ndarray:
        """Rows `rows` of the dense task vector, float64 (a bounded number of elements)."""
        raise NotImplementedError

    def at(self, flat: np.ndarray) -> np.ndarray:
        """The task vector's values at flat indices of the 2-D view (float64)."""
        rows, cols = np.divmod(flat, self.shape[1])
        out = np.empty(flat.size)
        for sl in _row_blocks(self.shape[0], self.shape[1]):
            pick = (rows >= sl.start) & (rows < sl.stop)
            if pick.any():
                out[pick] = self.block(sl)[rows[pick] - sl.start, cols[pick]]
        return out


@dataclass
class Dense(Term):
    """after - before, read a block of rows at a time."""

    after: np.ndarray  # 2-D, compute dtype
    before: np.ndarray
    kind = "dense"

    def __post_init__(self) -> None:
        self.shape = self.after.shape

    @classmethod
    def of(cls, after: RawTensor, before: RawTensor) -> Dense:
        return cls(_wide(after), _wide(before))

    def block(self, rows: slice) -> np.ndarray:
        return self.after[rows].astype(np.float64) - self.before[rows].astype(np.float64)


@dataclass
class DeltaTerm(Term):
    """tau = (before ^ diff) - before on the bit patterns' values, a block of rows at a time."""

    before: RawTensor
    diff: RawTensor  # the XOR object: as many bytes as `before`
    kind = "delta"

    def __post_init__(self) -> None:
        self.shape = view2d(self.before.shape)

    def block(self, rows: slice) -> np.ndarray:
        cols, width = self.shape[1], storage_itemsize(self.before.dtype)
        lo, hi = rows.start * cols * width, rows.stop * cols * width
        old = memoryview(self.before.data).cast("B")[lo:hi]
        new = xor(old, memoryview(self.diff.data).cast("B")[lo:hi])
        shape = (rows.stop - rows.start, cols)
        after, before = (
            to_compute(RawTensor(self.before.dtype, shape, data)).astype(np.float64)
            for data in (new, old)
        )
        return after - before


@dataclass
class LowRankTerm(Term):
    """tau = b @ a: b (m x r), a (r x n), float64."""

    b: np.ndarray
    a: np.ndarray
    kind = "low-rank"

    def __post_init__(self) -> None:
        self.shape = (self.b.shape[0], self.a.shape[1])

    def block(self, rows: slice) -> np.ndarray:
        return self.b[rows] @ self.a

    def at(self, flat: np.ndarray) -> np.ndarray:
        rows, cols = np.divmod(flat, self.shape[1])
        out = np.empty(flat.size)
        step = max(1, BLOCK // max(self.b.shape[1], 1))
        for s in range(0, flat.size, step):
            r, c = rows[s : s + step], cols[s : s + step]
            out[s : s + step] = np.einsum("ik,ki->i", self.b[r], self.a[:, c])
        return out


@dataclass
class IA3Term(Term):
    """tau = base * (row_scale[:, None] * col_scale[None, :]), one of the two all ones."""

    base: np.ndarray  # 2-D, compute dtype
    row_scale: np.ndarray  # float64, v - 1 or ones
    col_scale: np.ndarray
    kind = "ia3"

    def __post_init__(self) -> None:
        self.shape = self.base.shape

    def block(self, rows: slice) -> np.ndarray:
        return self.base[rows].astype(np.float64) * self.row_scale[rows, None] * self.col_scale


@dataclass
class SparseTerm(Term):
    """tau = values at sorted flat indices, zero elsewhere."""

    indices: np.ndarray  # int64, sorted, unique
    values: np.ndarray  # float64
    size: tuple[int, int]
    kind = "sparse"

    def __post_init__(self) -> None:
        self.shape = self.size

    def block(self, rows: slice) -> np.ndarray:
        cols = self.shape[1]
        out = np.zeros((rows.stop - rows.start, cols))
        lo, hi = np.searchsorted(self.indices, [rows.start * cols, rows.stop * cols])
        out.reshape(-1)[self.indices[lo:hi] - rows.start * cols] = self.values[lo:hi]
        return out

    def at(self, flat: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.indices, flat)
        pos = np.minimum(pos, max(self.indices.size - 1, 0))
        hit = self.indices[pos] == flat if self.indices.size else np.zeros(flat.size, bool)
        return np.where(hit, self.values[pos] if self.indices.size else 0.0, 0.0)


def _low_rank_pair(x: LowRankTerm, y: LowRankTerm) -> float:
    return float(np.sum((x.b.T @ y.b) * (x.a @ y.a.T)))


def _low_rank_other(x: LowRankTerm, y: Term) -> float:
    # sum(y * (b a)) = sum((b^T y) * a), one block of y's rows at a time.
    acc = np.zeros_like(x.a)
    for sl in _row_blocks(*y.shape):
        acc += x.b[sl].T @ y.block(sl)
    return float(np.sum(acc * x.a))


def _sparse_other(x: SparseTerm, y: Term) -> float:
    total = 0.0
    for s in range(0, x.indices.size, BLOCK):
        total += float(x.values[s : s + BLOCK] @ y.at(x.indices[s : s + BLOCK]))
    return total


def _blocks(x: Term, y: Term) -> float:
    total = 0.0
    for sl in _row_blocks(*x.shape):
        total += float(np.sum(x.block(sl) * y.block(sl)))
    return total


def inner(x: Term, y: Term) -> float:
    """<x, y>_F, exact in float64, using each side's structure (see the module docstring).

    Raises:
        ValueError: the terms are of different shapes.
    """
    if x.shape != y.shape:
        raise ValueError(f"task vectors of shapes {x.shape} and {y.shape}")
    pairs: list[tuple[type, Callable[[Term, Term], float]]] = [
        (SparseTerm, _sparse_other),  # type: ignore[list-item]
        (LowRankTerm, _low_rank_other),  # type: ignore[list-item]
    ]
    if isinstance(x, LowRankTerm) and isinstance(y, LowRankTerm):
        return _low_rank_pair(x, y)
    if isinstance(x, SparseTerm) and isinstance(y, SparseTerm):
        common, ix, iy = np.intersect1d(
            x.indices, y.indices, assume_unique=True, return_indices=True
        )
        return float(x.values[ix] @ y.values[iy]) if common.size else 0.0
    for kind, fn in pairs:
        if isinstance(x, kind):
            return fn(x, y)
        if isinstance(y, kind):
            return fn(y, x)
    return _blocks(x, y)


def weighted_inner(x: Term, y: Term, weight: np.ndarray) -> float:
    """sum(weight * x * y) (a diagonal Fisher metric), `weight` in the 2-D view; a block of
    rows at a time, so a low-rank term makes chunk-sized products only."""
    if x.shape != y.shape or weight.shape != x.shape:
        raise ValueError(f"task vectors of shapes {x.shape}, {y.shape}, weights {weight.shape}")
    total = 0.0
    for sl in _row_blocks(*x.shape):
        total += float(np.sum(weight[sl].astype(np.float64) * x.block(sl) * y.block(sl)))
    return total
