"""Fisher-weighted averaging (Matena & Raffel, https://arxiv.org/abs/2111.09832).

Each side brings a diagonal Fisher tensor F_i of the parameter's shape (read from side files by
git_theta/merges/fisher_files.py); with weights lambda_i (the `weights` option, default 1):

    theta* = sum_i lambda_i F_i theta_i / sum_i lambda_i F_i        (elementwise)

Zero Fisher: where sum_i lambda_i F_i is 0 (no side has information about that element), the
element is the plain weighted average sum_i lambda_i theta_i / sum_i lambda_i, which is also
what any constant Fisher gives. `floor` (default 0) raises every F_i to at least that value
first, as the paper's code does with its `fisher_floor` (1e-6 there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ConfigError, MergeError
from git_theta.merges.average import normalised
from git_theta.merges.base import MergeStrategy, OptionDef
from git_theta.merges.chunking import chunks

__all__ = ["FisherMerge"]

FISHER = "fisher"


class FisherMerge(MergeStrategy):
    """sum_i w_i F_i theta_i / sum_i w_i F_i; the weighted average where the Fisher sum is 0."""

    name = "fisher"
    summary = "Fisher-weighted average; Fisher tensors from <stem>.fisher.safetensors or fisher=."
    reference_url = "https://arxiv.org/abs/2111.09832"
    side_inputs = (FISHER,)
    options = (
        OptionDef("floor", float, 0.0, "lower bound applied to every Fisher value"),
        OptionDef(
            "fisher",
            str,
            "",
            "Fisher files, one per side, comma-separated (default: <stem>.fisher.safetensors)",
        ),
    )

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
        fishers = (inputs or {}).get(FISHER)
        if fishers is None or len(fishers) != len(sides):
            raise ConfigError(f"parameter {name}: fisher needs one Fisher tensor per side")
        if any(w < 0 for w in weights):
            raise ConfigError("fisher weights must not be negative")
        plain = normalised(weights)  # also rejects weights that sum to 0
        ctype = sides[0].dtype.type
        floor = float(options["floor"])
        flat_f = [f.reshape(-1) for f in fishers]
        flat_x = [x.reshape(-1) for x in sides]
        n = flat_x[0].size

        def scaled(i: int, sl: slice) -> np.ndarray:
            f = flat_f[i][sl]
            return ctype(weights[i]) * (np.maximum(f, ctype(floor)) if floor > 0 else f)

        # Element-wise in chunks (merges/chunking.py); a first pass checks the Fisher values
        # and finds their common maximum.
        top = 0.0
        for i, f in enumerate(flat_f):
            for sl in chunks(n):
                if not np.all(np.isfinite(f[sl])) or np.any(f[sl] < 0):
                    raise MergeError(
                        f"parameter {name}: Fisher tensor of side {i + 1} has negative or "
                        "non-finite values"
                    )
                top = max(top, float(scaled(i, sl).max(initial=0.0)))
        # The formula is invariant to scaling all Fisher tensors by one constant; dividing by
        # the largest value keeps tiny (1e-30) or huge Fisher values from under/overflowing.
        out = np.empty_like(flat_x[0])
        for sl in chunks(n):
            num = np.zeros_like(flat_x[0][sl])
            den = np.zeros_like(num)
            for i, side in enumerate(flat_x):
                s = scaled(i, sl)
                if top > 0:
                    s = s / ctype(top)
                num += s * side[sl]
                den += s
            average = np.zeros_like(num)
            for w, side in zip(plain, flat_x, strict=True):
                average += ctype(w) * side[sl]
            informed = den > 0
            out[sl] = np.where(informed, num / np.where(informed, den, ctype(1)), average)
        return out.reshape(sides[0].shape)
