"""Spherical linear interpolation between two sides (mergekit's `slerp`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ConfigError
from git_theta.merges.base import MergeStrategy, OptionDef, check_range
from git_theta.merges.chunking import chunks

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
        # The directions in float64, normalised in place: two float64 copies at most. (Whole
        # vectors, not chunks: BLAS's dot over the whole vector fixes cos's last bits.)
        u0 = v0.reshape(-1).astype(np.float64)
        u0 /= max(float(np.linalg.norm(u0)), _EPS)
        u1 = v1.reshape(-1).astype(np.float64)
        u1 /= max(float(np.linalg.norm(u1)), _EPS)
        cos = float(np.dot(u0, u1))
        del u0, u1
        if abs(cos) > DOT_THRESHOLD:
            s0 = s1 = None
        else:
            omega = float(np.arccos(np.clip(cos, -1.0, 1.0)))
            s0 = ctype(np.sin(omega * (1 - t)) / np.sin(omega))
            s1 = ctype(np.sin(omega * t) / np.sin(omega))
        a, b = v0.reshape(-1), v1.reshape(-1)
        out = np.empty_like(a)
        for sl in chunks(a.size):  # merges/chunking.py
            if s0 is None:
                out[sl] = a[sl] + ctype(t) * (b[sl] - a[sl])
            else:
                out[sl] = s0 * a[sl] + s1 * b[sl]
        return out.reshape(v0.shape)
