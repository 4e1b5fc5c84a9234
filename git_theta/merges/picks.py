"""Strategies that take one version of the parameter whole: ours, theirs or the base."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ConfigError
from git_theta.merges.base import MergeStrategy

__all__ = ["TakeBase", "TakeOurs", "TakeTheirs"]

_GIT_DOC = "https://git-scm.com/docs/git-merge#_merge_strategies"


class _Pick(MergeStrategy):
    reference_url = _GIT_DOC

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
        if self.pick == "base":
            if base is None:
                raise ConfigError(f"parameter {name}: take-base needs a merge base")
            return base
        return sides[0] if self.pick == "ours" else sides[-1]


class TakeOurs(_Pick):
    name = "take-ours"
    summary = "Keep our version of each conflicting parameter."
    pick = "ours"


class TakeTheirs(_Pick):
    name = "take-theirs"
    summary = "Take their version of each conflicting parameter."
    pick = "theirs"


class TakeBase(_Pick):
    name = "take-base"
    summary = "Go back to the merge base's version of each conflicting parameter."
    pick = "base"
