"""Fixtures for the update-type tests: a real object store in tmp_path, and dtype conversions
done independently of git_theta's own (numpy for F16/F32/F64, torch for bfloat16)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor

_NATIVE = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def rounded(values: np.ndarray, dtype: str) -> RawTensor:
    """`values` rounded once (to nearest even) to `dtype`."""
    shape = tuple(int(d) for d in values.shape)
    if dtype == "BF16":
        return RawTensor(dtype, shape, _bf16_bits(values).astype("<u2").tobytes())
    return RawTensor(dtype, shape, np.ascontiguousarray(values, dtype=_NATIVE[dtype]).tobytes())


def floats(tensor: RawTensor) -> np.ndarray:
    """The tensor's values, exactly, as float64."""
    if tensor.dtype == "BF16":
        bits = np.frombuffer(tensor.data, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64).reshape(tensor.shape)
    return (
        np.frombuffer(tensor.data, _NATIVE[tensor.dtype]).astype(np.float64).reshape(tensor.shape)
    )


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "lfs")


@pytest.fixture
def write(store: ObjectStore) -> Callable[[RawTensor], ObjectRef]:
    return lambda tensor: store.put(encode_object(tensor))


@pytest.fixture
def load(store: ObjectStore) -> Callable[[ObjectRef], RawTensor]:
    return store.load_tensor


@pytest.fixture
def to_dtype() -> Callable[[np.ndarray, str], RawTensor]:
    return rounded


@pytest.fixture
def values() -> Callable[[RawTensor], np.ndarray]:
    return floats
