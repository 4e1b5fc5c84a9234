"""Versions of a checkpoint as a full fine-tune makes them: every element moves a little."""

from __future__ import annotations

import numpy as np

__all__ = ["train_step"]


def train_step(
    params: dict[str, tuple[str, np.ndarray]], r: float = 1e-3, seed: int = 1
) -> dict[str, tuple[str, np.ndarray]]:
    """A copy of `params` whose float tensors (F16, F32, F64, BF16 as uint16 bits) each moved
    by relative noise of size `r`; other dtypes unchanged."""
    rng = np.random.default_rng(seed)
    out = dict(params)
    for name, (dtype, array) in params.items():
        if dtype == "BF16":
            values = (array.astype(np.uint32) << 16).view(np.float32)
            moved = values * (1 + r * rng.standard_normal(values.shape).astype(np.float32))
            out[name] = (dtype, (moved.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16))
        elif dtype in ("F16", "F32", "F64"):
            noise = rng.standard_normal(array.shape).astype(array.dtype)
            out[name] = (dtype, (array * (1 + r * noise)).astype(array.dtype))
    return out
