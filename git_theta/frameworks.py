"""Tensors between git-theta's RawTensor and the frameworks users hold: numpy and torch.

Arrays handed out own their memory (a fresh buffer per load, never a pooled one), so nothing
a caller keeps can change under it. torch is imported only when a torch tensor is involved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from git_theta.errors import CheckpointError, ConfigError
from git_theta.tensor import RawTensor

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FRAMEWORKS", "Framework", "from_framework", "is_torch_tensor", "to_framework"]

Framework = Literal["numpy", "torch"]
FRAMEWORKS: tuple[Framework, ...] = ("numpy", "torch")


def is_torch_tensor(value: object) -> bool:
    """Whether `value` is a torch.Tensor, without importing torch when it is not loaded."""
    return type(value).__module__.startswith("torch") and hasattr(value, "untyped_storage")


def _writable(data: bytes | bytearray | memoryview) -> bytearray | memoryview:
    if isinstance(data, memoryview) and not data.readonly:
        return data
    return bytearray(data)


def _to_numpy(tensor: RawTensor, where: str) -> np.ndarray:
    try:
        return RawTensor(tensor.dtype, tensor.shape, _writable(tensor.data)).to_numpy()
    except ValueError:
        raise CheckpointError(
            f"{where}: {tensor.dtype} has no numpy dtype; load it with framework='torch'"
        ) from None


def _to_torch(tensor: RawTensor, where: str) -> Any:
    import torch

    from git_theta.formats.pytorch import torch_dtypes

    dtype = torch_dtypes()[1].get(tensor.dtype)
    if dtype is None:
        raise CheckpointError(f"{where}: this torch has no dtype for {tensor.dtype}")
    if tensor.nbytes == 0:
        return torch.empty(tensor.shape, dtype=dtype)
    flat = torch.frombuffer(_writable(tensor.data), dtype=torch.uint8)
    return flat.view(dtype).reshape(tensor.shape)


def to_framework(tensor: RawTensor, framework: Framework, *, where: str) -> Any:
    """`tensor` as a numpy array or a torch tensor that owns its memory.

    Raises:
        CheckpointError: the framework has no dtype for the tensor's (bf16 in numpy).
        ConfigError: an unknown framework name.
    """
    if framework == "numpy":
        return _to_numpy(tensor, where)
    if framework == "torch":
        return _to_torch(tensor, where)
    raise ConfigError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")


def from_framework(value: Any, *, name: str, source: str) -> RawTensor:
    """A numpy array, torch tensor or Python/numpy scalar as a RawTensor, sharing its memory
    where it already is C-ordered and little-endian (copied otherwise).

    Raises:
        CheckpointError: a value that is not a tensor, or of a dtype git-theta cannot store.
    """
    if is_torch_tensor(value):
        from git_theta.formats.pytorch import check_tensor, tensor_to_raw

        return tensor_to_raw(value, check_tensor(value, name, source))
    import numpy as np

    where = f"{source}: parameter {name!r}"
    if not isinstance(value, np.ndarray | np.generic | int | float | bool):
        raise CheckpointError(f"{where}: {type(value).__name__} is not a tensor or an array")
    try:
        return RawTensor.view_numpy(np.asarray(value))
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
