"""Sparse updates: the changed entries only, as flat indices and their new values.

Values are the new raw elements in the parameter's dtype and are set, not added, so the update
is bit-exact for every dtype (a FISH-mask or diff-pruning fine-tune, a one-ulp edit, a NaN
payload). Indices are int32 when the tensor has fewer than 2**31 elements, else int64, sorted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from git_theta.errors import MetadataError
from git_theta.tensor import DTYPE_SIZES, RawTensor
from git_theta.updates.base import Inferred, Loader, UpdateType, Writer, object_ref

__all__ = ["Sparse", "changed_indices", "elements", "sparse_bytes"]

_UINT: dict[int, str] = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}


def elements(tensor: RawTensor) -> np.ndarray:
    """The elements as unsigned integers of their width, so equality is bit equality."""
    return np.frombuffer(tensor.data, dtype=_UINT[DTYPE_SIZES[tensor.dtype]])


def _index_dtype(numel: int) -> tuple[str, str]:
    return ("I32", "<i4") if numel < 2**31 else ("I64", "<i8")


def sparse_bytes(changed: int, numel: int, itemsize: int) -> int:
    """Raw bytes of a sparse update with `changed` entries (before compression)."""
    return changed * (DTYPE_SIZES[_index_dtype(numel)[0]] + itemsize)


def changed_indices(before: RawTensor, after: RawTensor) -> np.ndarray:
    """Flat indices of the elements whose bytes differ."""
    return np.flatnonzero(elements(before) != elements(after))


class Sparse(UpdateType):
    name = "sparse"
    summary = "changed entries only, as indices + new values (exact)"

    def apply(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> RawTensor:
        indices = load(object_ref(record, "indices"))
        values = load(object_ref(record, "values"))
        numel = math.prod(before.shape)
        if indices.dtype not in ("I32", "I64") or values.dtype != before.dtype:
            raise MetadataError("a sparse update's indices or values have the wrong dtype")
        idx = np.frombuffer(indices.data, "<i4" if indices.dtype == "I32" else "<i8")
        if idx.size != values.shape[0] or idx.size != record.get("count", idx.size):
            raise MetadataError("a sparse update's indices and values differ in number")
        if idx.size and (idx.min() < 0 or idx.max() >= numel):
            raise MetadataError("a sparse update's indices lie outside its parameter")
        out = bytearray(before.data)
        if idx.size:
            np.frombuffer(out, dtype=_UINT[DTYPE_SIZES[before.dtype]])[idx] = elements(values)
        return RawTensor(before.dtype, before.shape, out)

    def infer(
        self, before: RawTensor, after: RawTensor, write: Writer, options: Mapping[str, Any]
    ) -> Inferred:
        idx = changed_indices(before, after)
        name, code = _index_dtype(math.prod(before.shape))
        values = elements(after)[idx]
        record = {
            "type": self.name,
            "count": int(idx.size),
            "indices": write(
                RawTensor(name, (int(idx.size),), idx.astype(code).tobytes())
            ).to_json(),
            "values": write(RawTensor(after.dtype, (int(idx.size),), values.tobytes())).to_json(),
        }
        return Inferred(record, exact=True)
