"""Checkpoint versions built in memory for diff tests: stored (metadata + objects) or files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from git_theta.diffing.sides import FileSide, StoredSide
from git_theta.metadata import Metadata, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash
from testing.checkpoints import write_safetensors

__all__ = ["file_side", "stored_side", "tensor"]


def tensor(dtype: str, array: np.ndarray) -> RawTensor:
    return RawTensor(dtype, tuple(array.shape), np.ascontiguousarray(array).tobytes())


def stored_side(
    store: ObjectStore, params: dict[str, tuple[str, np.ndarray]], label: str = "stored"
) -> StoredSide:
    """A version held as metadata, its objects written to `store`."""
    entries = {}
    for name, (dtype, array) in params.items():
        t = tensor(dtype, array)
        ref = store.put(encode_object(t))
        entries[name] = ParamEntry(t.dtype, t.shape, content_hash(t.data), ref)
    return StoredSide(Metadata("safetensors", None, entries), store, label=label)


def file_side(
    tmp: Path, params: dict[str, tuple[str, np.ndarray]], label: str = "file"
) -> FileSide:
    """A version that is a safetensors file (the work tree case)."""
    data = write_safetensors(tmp / f"{label}.safetensors", params)
    return FileSide(lambda: io.BytesIO(data), path="model.safetensors", label=label)
