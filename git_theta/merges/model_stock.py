"""Model Stock (Jang et al., https://arxiv.org/abs/2403.19522), as mergekit computes it.

With base w_0 and N >= 2 sides w_i, offsets d_i = w_i - w_0 (each flattened to one vector, or
row by row with `filter_wise=1`, a 1-D parameter then being one row):

    cos   = mean over pairs i < j of  d_i . d_j / max(|d_i| |d_j|, 1e-6), clipped to [-1, 1]
    t     = N cos / (1 + (N - 1) cos)
    merged = t * mean_i(w_i) + (1 - t) * w_0

The paper gives t for N = 2 only; mergekit (and we) average the pairwise cosines for more.
Where 1 + (N - 1) cos is 0 (exactly opposite offsets, N = 2) t is undefined: we take t = 0,
the base, where mergekit would produce inf/NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from git_theta.errors import ConfigError
from git_theta.merges import chunking
from git_theta.merges.base import MergeStrategy, OptionDef
from git_theta.merges.chunking import chunks

__all__ = ["ModelStock"]

# As mergekit: the product of norms is clamped so a zero offset gives cos = 0 (t = 0: the base).
_NORM_CLAMP = 1e-6


class ModelStock(MergeStrategy):
    """t * mean(sides) + (1 - t) * base, t from the mean pairwise cosine of the offsets."""

    name = "model-stock"
    summary = "Model Stock: move from the base toward the sides' mean by their offsets' angle."
    reference_url = "https://arxiv.org/abs/2403.19522"
    needs_base = True
    options = (OptionDef("filter_wise", int, 0, "1: one t per row instead of per tensor"),)

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
            raise ConfigError(f"parameter {name}: model-stock needs a merge base")
        if len(sides) < 2:
            raise ConfigError("model-stock needs at least two sides besides the base")
        filter_wise = int(options["filter_wise"])
        if filter_wise not in (0, 1):
            raise ConfigError(f"merge option filter_wise={filter_wise} must be 0 or 1")
        ctype = base.dtype.type
        if filter_wise and base.ndim >= 1:
            rows = (1, -1) if base.ndim == 1 else (-1, base.shape[-1])
        else:
            rows = (1, -1)
        w0 = base.reshape(rows)
        ws = [s.reshape(rows) for s in sides]
        cosines = []
        for i in range(len(ws)):
            for j in range(i + 1, len(ws)):
                # Offsets made per pair, not all kept: at most three tensor-sized temporaries.
                a, b = ws[i] - w0, ws[j] - w0
                norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
                cos = (a * b).sum(axis=-1) / np.maximum(norms, ctype(_NORM_CLAMP))
                cosines.append(np.clip(cos, -1, 1))
                del a, b
        cos = np.mean(np.stack(cosines), axis=0)[:, None]
        n = len(ws)
        den = 1 + (n - 1) * cos
        t = np.where(den != 0, n * cos / np.where(den != 0, den, 1), 0).astype(base.dtype)
        out = np.empty_like(w0)
        for r, c in _blocks(*w0.shape):  # element-wise, in chunks (merges/chunking.py)
            mean = ws[0][r, c].copy()
            for w in ws[1:]:
                mean = mean + w[r, c]
            mean = mean / ctype(n)
            out[r, c] = t[r] * mean + (1 - t[r]) * w0[r, c]
        return out.reshape(base.shape)


def _blocks(n_rows: int, n_cols: int) -> Iterator[tuple[slice, slice]]:
    """(rows, columns) blocks of about CHUNK_ELEMENTS elements covering an array."""
    if n_cols >= chunking.CHUNK_ELEMENTS or n_rows <= 1:
        for r in range(n_rows):
            for c in chunks(n_cols):
                yield slice(r, r + 1), c
        return
    per = max(1, chunking.CHUNK_ELEMENTS // n_cols)
    for start in range(0, n_rows, per):
        yield slice(start, min(n_rows, start + per)), slice(0, n_cols)
