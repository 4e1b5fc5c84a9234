"""The default policy's choice for one changed tensor: dense, sparse or delta, whichever stores
smallest.

The estimate runs the store's real codec on a sample (a few evenly spaced slices of both
versions, see `delta.sample`), so choosing costs a small fraction of encoding the tensor. All
three encodings are exact, so the choice changes only the store's size and the checkout's
work, never the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from git_theta.tensor import PACKED_BITS, RawTensor, dtype_nbytes
from git_theta.updates.delta import delta_bytes, encoded_size, pieces, sample
from git_theta.updates.snapshot import MIN_UPDATE_BYTES

if TYPE_CHECKING:
    from git_theta.formats.base import PagedTensor

__all__ = [
    "DELTA_MARGIN",
    "MIN_UPDATE_BYTES",
    "Estimate",
    "delta_or_dense",
    "estimate",
    "estimate_sampled",
    "smallest",
    "sparse_looks_smallest",
]

# A delta must beat dense by this fraction of dense's size to be chosen: each link of a chain
# costs a checkout one more object to read and XOR, which a 1-2% saving does not repay, and
# the sample's estimate has about that much noise.
DELTA_MARGIN = 0.05
# MIN_UPDATE_BYTES (snapshot.py): smaller tensors stay dense.


@dataclass(frozen=True)
class Estimate:
    """Estimated stored bytes of one changed tensor in each encoding (None: not possible)."""

    dense: float
    sparse: float | None
    delta: float


def _changed(before: RawTensor, after: RawTensor | PagedTensor) -> int:
    from git_theta.updates.sparse import changed_indices

    if not isinstance(after, RawTensor):  # in pages: only a tensor estimated sparse gets here
        after = RawTensor(after.dtype, after.shape, b"".join(pieces(after.data)))
    return int(changed_indices(before, after).size)


def estimate(before: RawTensor, after: RawTensor | PagedTensor) -> Estimate:
    """Stored bytes of `after` as dense, sparse (against `before`) and delta, estimated from
    samples of both (exact for tensors no larger than a sample)."""
    return estimate_sampled(sample(before), sample(after), after.dtype, after.shape)


def estimate_sampled(
    s_before: RawTensor, s_after: RawTensor, dtype: str, shape: tuple[int, ...]
) -> Estimate:
    """`estimate` from the same slices of both versions (`sample`'s flat unsigned words) of a
    tensor of `dtype` and `shape`."""
    from git_theta.updates.sparse import sparse_bytes

    nbytes = dtype_nbytes(dtype, shape)
    scale = nbytes / max(len(s_after.data), 1)
    dense = encoded_size(s_after) * scale
    delta = encoded_size(delta_bytes(s_before, s_after), delta=True) * scale
    sparse: float | None = None
    if dtype not in PACKED_BITS:
        # Two objects (indices, values), each with a header like the dense object's.
        header = encoded_size(RawTensor(s_after.dtype, (0,), b""))
        numel = math.prod(shape)
        itemsize = nbytes // max(numel, 1)
        words = np.frombuffer(s_after.data, dtype=_uint(itemsize))
        old = np.frombuffer(s_before.data, dtype=_uint(itemsize))
        changed = int(np.count_nonzero(words != old)) * scale
        sparse = float(sparse_bytes(math.ceil(changed), numel, itemsize) + 2 * header)
    return Estimate(dense, sparse, delta)


def _uint(itemsize: int) -> str:
    return {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}[itemsize]


def smallest(before: RawTensor, after: RawTensor | PagedTensor) -> str:
    """ "dense", "sparse" or "delta": the encoding of `after` (a changed version of `before`,
    same dtype and shape) that stores smallest, never one estimated larger than dense."""
    if len(after.data) < MIN_UPDATE_BYTES:
        return "dense"
    est = estimate(before, after)
    if sparse_looks_smallest(est):
        # The sample may miss a few changes among many elements: count them all before
        # committing to sparse (one compare pass; sparse is chosen only for rare changes).
        from git_theta.updates.sparse import sparse_bytes

        numel = math.prod(after.shape)
        itemsize = len(after.data) // max(numel, 1)
        header = encoded_size(RawTensor("U8", (0,), b""))
        exact = sparse_bytes(_changed(before, after), numel, itemsize) + 2 * header
        if exact < min(est.dense, est.delta):
            return "sparse"
    return delta_or_dense(est)


def sparse_looks_smallest(est: Estimate) -> bool:
    return est.sparse is not None and est.sparse < min(est.dense, est.delta)


def delta_or_dense(est: Estimate) -> str:
    """Delta if it beats dense by DELTA_MARGIN, else dense (sparse ruled out)."""
    return "delta" if est.delta < est.dense * (1 - DELTA_MARGIN) else "dense"
