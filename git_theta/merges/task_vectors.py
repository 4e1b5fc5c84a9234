"""Task-vector merges: task arithmetic, TIES and DARE, as mergekit computes them.

With base O and sides theta_i, task vectors are d_i = theta_i - O. One configurable class
provides four strategies (mergekit `generalized_task_arithmetic.py` does the same):

  1. sparsify each d_i: none (task arithmetic), per-tensor magnitude trim keeping the
     k = max(1, floor(density * numel)) largest |d_i| (TIES, as mergekit `sparsify.magnitude`;
     equal magnitudes at the cut: earlier positions win; NaN ranks below every magnitude), or
     a random drop with probability 1 - density and rescale by 1/density (DARE);
  2. weight: e_i = w_i * d_i (weights applied *before* sign election);
  3. with sign election (TIES, DARE-TIES): sign = sign of sum_i e_i (>= 0 counts as +), and
     mask_i = (sign(e_i) == sign), so zeros from trimming never vote or count;
     mixed = sum_i e_i * mask_i, divisor = sum_i w_i * mask_i (0 -> 1);
     without: mixed = sum_i e_i, divisor = sum_i w_i;
  4. if normalize: mixed /= divisor (TIES: the disjoint mean over agreeing entries); the
     `normalize` option defaults as mergekit registers each method: 1 for TIES, 0 for task
     arithmetic, DARE-linear and DARE-TIES;
  5. result = O + lambda * mixed.

Memory: only the trim's cut needs the whole tensor (one array of magnitudes per side, in
turn, partitioned in place). Everything else is element-wise and runs in chunks
(merges/chunking.py), so a merge holds its inputs, its output and a few chunk-sized arrays.
The chunked order of operations is exactly the whole-tensor one, so results do not depend
on the chunk size.

DARE's random mask is reproducible: the generator is PCG64 seeded with
SeedSequence([seed, first 8 bytes of sha256(parameter name) as an integer]); the sides draw
their masks in order (ours first) as `random(shape) < density`: side i's stream starts
i * numel draws in (PCG64 `advance`), which lets the chunks draw each side's mask piecewise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from git_theta.errors import ConfigError
from git_theta.merges.base import MergeStrategy, OptionDef, check_range
from git_theta.merges.chunking import chunks

__all__ = ["TaskVectorMerge", "TrimCut", "dare_rng", "magnitude_trim"]

DENSITY = OptionDef("density", float, 1.0, "fraction of each task vector kept (0, 1]")
LAMBDA = OptionDef("lambda", float, 1.0, "scale of the merged task vector")
SEED = OptionDef("seed", int, 0, "seed mixed with the parameter name for the random drop")


def _magnitudes(delta: np.ndarray) -> np.ndarray:
    """|delta|, NaN as -1: the trim ranks NaN below every magnitude (as a stable sort of
    -|d| did, which puts NaN last)."""
    mags = np.abs(delta)
    mags[np.isnan(mags)] = -1
    return mags


@dataclass(frozen=True)
class TrimCut:
    """Which entries a magnitude trim keeps: those above `threshold`, and those equal to it
    at positions up to `last_tied` (the earlier positions win a tie at the cut)."""

    threshold: Any  # a numpy scalar of the compute dtype
    last_tied: int

    @classmethod
    def find(cls, side: np.ndarray, base: np.ndarray, density: float) -> TrimCut | None:
        """The cut keeping the k = max(1, floor(density * numel)) largest |side - base|
        (flat arrays); None when it keeps everything."""
        n = side.size
        k = max(1, int(density * n))  # as mergekit `sparsify.magnitude`
        if density >= 1.0 or k >= n:
            return None
        mags = np.empty(n, dtype=side.dtype)
        for sl in chunks(n):
            mags[sl] = _magnitudes(side[sl] - base[sl])
        # Ascending, the k largest start at n - k: a selection, not a sort (O(n)).
        mags.partition(n - k)
        threshold = mags[n - k]
        del mags
        above, tied = [], []
        for sl in chunks(n):
            m = _magnitudes(side[sl] - base[sl])
            above.append(int(np.count_nonzero(m > threshold)))
            tied.append(int(np.count_nonzero(m == threshold)))
        need = k - sum(above)  # >= 1: the entry at the cut itself is tied with the threshold
        for sl, count in zip(chunks(n), tied, strict=True):
            if need <= count:
                m = _magnitudes(side[sl] - base[sl])
                return cls(threshold, sl.start + int(np.flatnonzero(m == threshold)[need - 1]))
            need -= count
        raise AssertionError("the partition's threshold is not in the tensor")

    def keep(self, delta: np.ndarray, start: int) -> np.ndarray:
        """The kept entries of the chunk of side - base that starts at flat index `start`."""
        m = _magnitudes(delta)
        kept = m > self.threshold
        if self.last_tied >= start:
            tied = m == self.threshold
            tied[self.last_tied - start + 1 :] = False
            kept |= tied
        return kept


def magnitude_trim(delta: np.ndarray, density: float) -> np.ndarray:
    """`delta` with all but its max(1, floor(density * numel)) largest-magnitude entries zeroed
    (equal magnitudes at the cut: earlier positions win)."""
    flat = delta.reshape(-1)
    zero = np.zeros_like(flat)
    cut = TrimCut.find(flat, zero, density) if flat.size else None
    if cut is None:
        return delta
    return np.where(cut.keep(flat, 0), flat, delta.dtype.type(0)).reshape(delta.shape)


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
        self.normalize = normalize  # the default of the `normalize` option
        normalize_option = OptionDef(
            "normalize",
            int,
            int(normalize),
            "1: divide the merged task vector by the (agreeing) weights' sum; 0: do not",
        )
        self.options = (
            (LAMBDA,)
            + ((DENSITY,) if sparsify else ())
            + ((SEED,) if sparsify == "random" else ())
            + (normalize_option,)
        )

    def linear_coefficients(
        self, weights: Sequence[float], options: Mapping[str, Any]
    ) -> list[float] | None:
        """Task arithmetic only: lambda * w_i (divided by sum w when normalising)."""
        if self.sparsify is not None or self.consensus:
            return None
        total = float(sum(weights)) if int(options.get("normalize", int(self.normalize))) else 1.0
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
        normalize = int(options.get("normalize", int(self.normalize)))
        if normalize not in (0, 1):
            raise ConfigError(f"merge option normalize={normalize} must be 0 or 1")
        dtype = base.dtype
        ctype = dtype.type
        flat_base = base.reshape(-1)
        flat_sides = [s.reshape(-1) for s in sides]
        n = flat_base.size
        cuts = (
            [TrimCut.find(s, flat_base, density) for s in flat_sides]
            if self.sparsify == "magnitude"
            else []
        )
        streams = (
            _dare_streams(int(options["seed"]), name, len(sides), n)
            if self.sparsify == "random"
            else []
        )
        w = [ctype(x) for x in weights]
        # The weights' sum as the whole-tensor version took it (a sum over a stacked axis).
        w_total = np.array(weights, dtype=dtype).reshape((-1,) + (1,) * base.ndim).sum(axis=0)
        w_sum = w_total.reshape(-1)[0]
        if np.abs(w_sum) < 1e-8:
            w_sum = ctype(1)
        out = np.empty_like(flat_base)
        for sl in chunks(n):
            b = flat_base[sl]
            weighted = []
            for i, (side, wi) in enumerate(zip(flat_sides, w, strict=True)):
                d = side[sl] - b
                cut = cuts[i] if cuts else None
                if cut is not None:
                    d = np.where(cut.keep(d, sl.start), d, ctype(0))
                elif streams:
                    keep = streams[i].random(d.shape) < density
                    d = np.where(keep, d / ctype(density), ctype(0))
                weighted.append(np.multiply(d, wi, out=d))
            out[sl] = b + ctype(lam) * self._mix(weighted, w, w_sum, dtype, normalize=normalize)
        return out.reshape(base.shape)

    def _mix(
        self,
        weighted: list[np.ndarray],
        w: list[Any],
        w_sum: Any,
        dtype: np.dtype[Any],
        *,
        normalize: int,
    ) -> np.ndarray:
        """The weighted task vectors of one chunk combined: summed (normalised by the weights'
        sum), or with TIES consensus, the ones agreeing with the sign of their sum."""
        if not self.consensus:
            mixed = _sum(weighted)
            return mixed / w_sum if normalize else mixed
        ctype = dtype.type
        total = _sum(weighted)
        sign = np.where(total >= 0, ctype(1), ctype(-1))
        masks = [(np.sign(e) == sign).astype(dtype) for e in weighted]
        mixed = _sum([e * m for e, m in zip(weighted, masks, strict=True)])
        divisor = _sum([wi * m for wi, m in zip(w, masks, strict=True)])
        divisor[divisor == 0] = 1
        return mixed / divisor if normalize else mixed


def _sum(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """0 + arrays[0] + arrays[1] + ..., left to right: how numpy's add.reduce sums a stacked
    axis (from its identity, so all -0.0 sum to +0.0), which the results stay bit-equal to."""
    total = arrays[0] + arrays[0].dtype.type(0)
    for a in arrays[1:]:
        total += a
    return total


def _dare_streams(seed: int, name: str, n_sides: int, numel: int) -> list[np.random.Generator]:
    """One generator per side, side i's starting where the whole-tensor draws of sides
    0..i-1 end (each float64 `random()` draw takes one PCG64 step)."""
    streams = []
    for i in range(n_sides):
        rng = dare_rng(seed, name)
        rng.bit_generator.advance(i * numel)  # type: ignore[attr-defined]
        streams.append(rng)
    return streams
