"""Weighted average of the sides (model soup / linear merge)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ConfigError
from git_theta.merges.base import MergeStrategy
from git_theta.merges.chunking import chunks

__all__ = ["Average"]


def normalised(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    if abs(total) < 1e-12:
        raise ConfigError("merge weights sum to zero; give weights that do not cancel")
    return [w / total for w in weights]


class Average(MergeStrategy):
    """sum_i w_i * theta_i with w normalised to sum 1 (default: equal weights).

    Computed as theta_0 + sum_{i>0} w_i (theta_i - theta_0), equal to the weighted mean when
    the weights sum to 1, so the average of equal tensors is exactly that tensor.
    """

    name = "average"
    summary = "Weighted average of the sides (weights normalised to sum to 1)."
    reference_url = "https://arxiv.org/abs/2203.05482"

    def linear_coefficients(
        self, weights: Sequence[float], options: Mapping[str, Any]
    ) -> list[float] | None:
        # sum_i w_i theta_i = base + sum_i w_i (theta_i - base) when the w_i sum to 1.
        return normalised(weights)

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
        w = normalised(weights)
        first = sides[0].reshape(-1)
        rest = [s.reshape(-1) for s in sides[1:]]
        ctype = first.dtype.type
        out = np.empty_like(first)
        for sl in chunks(first.size):  # merges/chunking.py: temporaries stay chunk-sized
            acc = first[sl].copy()
            for wi, side in zip(w[1:], rest, strict=True):
                acc += ctype(wi) * (side[sl] - first[sl])
            out[sl] = acc
        return out.reshape(sides[0].shape)
