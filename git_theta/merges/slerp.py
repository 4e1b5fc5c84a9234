"""Spherical linear interpolation between two sides (mergekit's `slerp`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ConfigError
from git_theta.merges.base import MergeStrategy, OptionDef, check_range

__all__ = ["Slerp"]

# As mergekit: directions this close to colinear make sin(theta) ~ 0, so interpolate linearly.
DOT_THRESHOLD = 0.9995
_EPS = 1e-8


class Slerp(MergeStrategy):
    """Slerp of ours (t=0) towards theirs (t=1), each tensor flattened to one vector.

    With unit directions u0, u1 and cos = u0 . u1 (float64): if |cos| > 0.9995, the result is
    the linear interpolation theta_0 + t (theta_1 - theta_0); otherwise, with omega = arccos(cos),
    sin(omega (1-t)) / sin(omega) * theta_0 + sin(omega t) / sin(omega) * theta_1.
    """

    name = "slerp"
    summary = "Spherical interpolation from ours (t=0) to theirs (t=1); two sides only."
    reference_url = "https://github.com/arcee-ai/mergekit/blob/main/mergekit/merge_methods/slerp.py"
    options = (OptionDef("t", float, 0.5, "interpolation factor in [0, 1]"),)

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
        if len(sides) != 2:
            raise ConfigError(f"slerp merges exactly two sides, not {len(sides)}")
        t = check_range(options, "t", 0.0, 1.0)
        v0, v1 = sides
        ctype = v0.dtype.type
        a = v0.reshape(-1).astype(np.float64)
        b = v1.reshape(-1).astype(np.float64)
        u0 = a / max(float(np.linalg.norm(a)), _EPS)
        u1 = b / max(float(np.linalg.norm(b)), _EPS)
        cos = float(np.dot(u0, u1))
        if abs(cos) > DOT_THRESHOLD:
            return v0 + ctype(t) * (v1 - v0)
        omega = float(np.arccos(np.clip(cos, -1.0, 1.0)))
        s0 = np.sin(omega * (1 - t)) / np.sin(omega)
        s1 = np.sin(omega * t) / np.sin(omega)
        return (ctype(s0) * v0 + ctype(s1) * v1).astype(v0.dtype)
