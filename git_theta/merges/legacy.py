"""git-theta 0.2's merge action names, as presets of today's strategies.

0.2 named its actions `take_us`, `take_them`, `take_original`, `average-ours-theirs`,
`average-all`, `average-ours-original`, `average-theirs-original` (with short cuts such as
`avg-ab`). Each is one of our strategies with fixed default options; the averages that include
the merge base are task arithmetic (`O + lambda * sum_i w_i (theta_i - O)`): the mean of ours
and the base is `O + 0.5 (A - O)`, the mean of all three `O + 1/3 ((A - O) + (B - O))`. They
are accepted wherever a strategy is named, and not listed among the strategies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from git_theta.merges.base import MergeStrategy, OptionDef

__all__ = ["LEGACY_NAMES", "Preset"]

#: 0.2 name -> (our strategy, its options as 0.2 behaved).
LEGACY_NAMES: dict[str, tuple[str, dict[str, str]]] = {
    "take_us": ("take-ours", {}),
    "take_them": ("take-theirs", {}),
    "take_original": ("take-base", {}),
    "average-ours-theirs": ("average", {}),
    "avg-ab": ("average", {}),
    "average-all": ("task-arithmetic", {"lambda": repr(1 / 3), "weights": "1,1"}),
    "avg-all": ("task-arithmetic", {"lambda": repr(1 / 3), "weights": "1,1"}),
    "average-ours-original": ("task-arithmetic", {"lambda": "0.5", "weights": "1,0"}),
    "avg-ao": ("task-arithmetic", {"lambda": "0.5", "weights": "1,0"}),
    "average-theirs-original": ("task-arithmetic", {"lambda": "0.5", "weights": "0,1"}),
    "avg-to": ("task-arithmetic", {"lambda": "0.5", "weights": "0,1"}),
}


class Preset(MergeStrategy):
    """`target` under another name, with other option defaults (still overridable)."""

    def __init__(self, name: str, target: MergeStrategy, defaults: Mapping[str, str]) -> None:
        self.name = name
        self.target = target
        self.summary = f"git-theta 0.2's {name}: {target.name}" + "".join(
            f" {k}={v}" for k, v in defaults.items()
        )
        self.reference_url = target.reference_url
        self.needs_base = target.needs_base
        self.pick = target.pick
        self.side_inputs = target.side_inputs
        self._all = tuple(
            replace(d, default=d.type(defaults[d.name])) if d.name in defaults else d
            for d in target.all_options()
        )
        self.options = self._all[:-1]

    def all_options(self) -> tuple[OptionDef, ...]:
        return self._all

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
        return self.target.merge(base, sides, weights, options, name=name, inputs=inputs)

    def linear_coefficients(
        self, weights: Sequence[float], options: Mapping[str, Any]
    ) -> list[float] | None:
        return self.target.linear_coefficients(weights, options)
