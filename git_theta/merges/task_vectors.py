"""Task-vector merges: task arithmetic, TIES and DARE, as mergekit computes them.

With base O and sides theta_i, task vectors are d_i = theta_i - O. One configurable class
provides four strategies (mergekit `generalized_task_arithmetic.py` does the same):

  1. sparsify each d_i: none (task arithmetic), per-tensor magnitude trim keeping the
     floor(density * numel) largest |d_i| (TIES; ties broken by position, earlier first), or a
     random drop with probability 1 - density and rescale by 1/density (DARE);
  2. weight: e_i = w_i * d_i (weights applied *before* sign election);
  3. with sign election (TIES, DARE-TIES): sign = sign of sum_i e_i (>= 0 counts as +), and
     mask_i = (sign(e_i) == sign), so zeros from trimming never vote or count;
     mixed = sum_i e_i * mask_i, divisor = sum_i w_i * mask_i (0 -> 1);
     without: mixed = sum_i e_i, divisor = sum_i w_i;
  4. if normalize: mixed /= divisor (TIES: the disjoint mean over agreeing entries);
  5. result = O + lambda * mixed.

DARE's random mask is reproducible: the generator is PCG64 seeded with
SeedSequence([seed, first 8 bytes of sha256(parameter name) as an integer]); the sides draw
their masks in order (ours first) as `random(shape) < density`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ConfigError
from git_theta.merges.base import MergeStrategy, OptionDef, check_range

__all__ = ["TaskVectorMerge", "dare_rng", "magnitude_trim"]

DENSITY = OptionDef("density", float, 1.0, "fraction of each task vector kept (0, 1]")
LAMBDA = OptionDef("lambda", float, 1.0, "scale of the merged task vector")
SEED = OptionDef("seed", int, 0, "seed mixed with the parameter name for the random drop")


def magnitude_trim(delta: np.ndarray, density: float) -> np.ndarray:
    """`delta` with all but its floor(density * numel) largest-magnitude entries zeroed."""
    if density >= 1.0:
        return delta
    flat = delta.reshape(-1)
    k = int(density * flat.size)  # as mergekit `magnitude`: floor
    keep = np.argsort(-np.abs(flat), kind="stable")[:k]
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(delta.shape)


def dare_rng(seed: int, name: str) -> np.random.Generator:
    """The generator DARE uses for parameter `name` (stable across runs and machines)."""
    mixed = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, mixed])))


class TaskVectorMerge(MergeStrategy):
    """Task arithmetic, TIES and DARE, by their sparsification and sign election."""

    needs_base = True

    def __init__(
        self,
        name: str,
        summary: str,
        reference_url: str,
        *,
        sparsify: str | None,
        consensus: bool,
        normalize: bool,
    ) -> None:
        self.name = name
        self.summary = summary
        self.reference_url = reference_url
        self.sparsify = sparsify
        self.consensus = consensus
        self.normalize = normalize
        self.options = (
            (LAMBDA,) + ((DENSITY,) if sparsify else ()) + ((SEED,) if sparsify == "random" else ())
        )

    def linear_coefficients(
        self, weights: Sequence[float], options: Mapping[str, Any]
    ) -> list[float] | None:
        """Task arithmetic only: lambda * w_i (divided by sum w when normalising)."""
        if self.sparsify is not None or self.consensus:
            return None
        total = float(sum(weights)) if self.normalize else 1.0
        divisor = total if abs(total) >= 1e-8 else 1.0
        return [float(options["lambda"]) * w / divisor for w in weights]

    def merge(
        self,
        base: np.ndarray | None,
        sides: Sequence[np.ndarray],
        weights: Sequence[float],
        options: Mapping[str, Any],
        *,
        name: str = "",
        inputs: Mapping[str, Sequence[np.ndarray]] | None = None,
    ) -> np.ndarray:
        if base is None:
            raise ConfigError(f"parameter {name}: {self.name} needs a merge base")
        lam = float(options["lambda"])
        density = check_range(options, "density", 1e-9, 1.0) if self.sparsify else 1.0
        rng = dare_rng(int(options["seed"]), name) if self.sparsify == "random" else None
        ctype = base.dtype.type
        deltas = []
        for side, w in zip(sides, weights, strict=True):
            d = side - base
            if self.sparsify == "magnitude":
                d = magnitude_trim(d, density)
            elif rng is not None:
                keep = rng.random(d.shape) < density
                d = np.where(keep, d / ctype(density), ctype(0))
            deltas.append(ctype(w) * d)
        stacked = np.stack(deltas)
        w_col = np.array(weights, dtype=base.dtype).reshape((-1,) + (1,) * base.ndim)
        if self.consensus:
            sign = np.where(stacked.sum(axis=0) >= 0, 1, -1).astype(base.dtype)
            mask = (np.sign(stacked) == sign).astype(base.dtype)
            mixed = (stacked * mask).sum(axis=0)
            divisor = (w_col * mask).sum(axis=0)
            divisor[divisor == 0] = 1
        else:
            mixed = stacked.sum(axis=0)
            divisor = np.broadcast_to(w_col.sum(axis=0), mixed.shape).copy()
            divisor[np.abs(divisor) < 1e-8] = 1
        if self.normalize:
            mixed = mixed / divisor
        return (base + ctype(lam) * mixed).astype(base.dtype)
