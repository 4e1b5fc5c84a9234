"""Low-rank updates: W' = W + scale * (B @ A), transposed when the layer stores W as (in, out).

Factors keep the dtype they came in (an adapter's float32 or bfloat16); the product is computed
in float32 as PEFT computes it ((B @ A) first, then the scale), added to W in float32 and rounded
once to W's dtype. `tolerance` (in the record) scales the rounding allowance `slack` gives a
tensor merged elsewhere: tolerance * eps(dtype) * (|W| + |W'| + r * |scale| * (|B| @ |A|)),
the error bound of one rounding of the sum plus the float32 product's own accumulation error
(a sum of r products, each order of summation within r roundings of the others).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from git_theta.errors import MetadataError
from git_theta.metadata import ObjectRef
from git_theta.tensor import RawTensor
from git_theta.updates import numeric
from git_theta.updates.base import Inferred, Loader, UpdateType, Writer, object_ref

__all__ = ["LowRank", "low_rank_record"]

DEFAULT_TOLERANCE = 1.0


def low_rank_record(
    a: ObjectRef, b: ObjectRef, scale: float, *, transpose: bool, tolerance: float
) -> dict[str, Any]:
    return {
        "type": "low-rank",
        "a": a.to_json(),
        "b": b.to_json(),
        "scale": float(scale),
        "tolerance": float(tolerance),
        "transpose": bool(transpose),
    }


def _factors(
    before: RawTensor, record: Mapping[str, Any], load: Loader
) -> tuple[np.ndarray, np.ndarray]:
    scale = record["scale"]
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise MetadataError(f"a low-rank update's scale {scale!r} is not a finite number")
    a = load(object_ref(record, "a"))
    b = load(object_ref(record, "b"))
    if not (numeric.numeric(a.dtype) and numeric.numeric(b.dtype)):
        raise MetadataError(f"low-rank factors of dtype {a.dtype}/{b.dtype} are not floats")
    if len(before.shape) != 2 or len(a.shape) != 2 or len(b.shape) != 2:
        raise MetadataError("a low-rank update needs a 2-D parameter and 2-D factors")
    out, inp = before.shape[::-1] if record.get("transpose") else before.shape
    if b.shape[1] != a.shape[0] or b.shape[0] != out or a.shape[1] != inp:
        raise MetadataError(
            f"low-rank factors {b.shape} @ {a.shape} do not make a {before.shape} update"
        )
    # The product is float32 (as PEFT computes it), except for F64 factors of an F64
    # parameter (a truncated SVD of an F64 change), which float32 would round away.
    wide = np.float64 if before.dtype == a.dtype == b.dtype == "F64" else np.float32
    return numeric.to_compute(a).astype(wide), numeric.to_compute(b).astype(wide)


def _delta(a: np.ndarray, b: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    delta = (b @ a) * a.dtype.type(record["scale"])
    return delta.T if record.get("transpose") else delta


class LowRank(UpdateType):
    name = "low-rank"
    summary = "factors B (out x r) and A (r x in) with a scale: W + scale * B @ A"

    def apply(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> RawTensor:
        a, b = _factors(before, record, load)
        base = numeric.to_compute(before)
        return numeric.from_compute(base + _delta(a, b, record).astype(base.dtype), before.dtype)

    def slack(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> np.ndarray:
        a, b = _factors(before, record, load)
        # A float32 sum of r products is off by up to about r roundings of sum |b_k a_k|.
        rank = a.shape[0]
        bound = (np.abs(b) @ np.abs(a)).astype(np.float64) * abs(float(record["scale"])) * rank
        if record.get("transpose"):
            bound = bound.T
        base = numeric.to_compute(before)
        after = base + _delta(a, b, record).astype(base.dtype)
        # |W| and |W'| both: the sum's rounding is relative to the larger of the two.
        magnitude = np.abs(base.astype(np.float64)) + np.abs(after.astype(np.float64)) + bound
        return (
            float(record.get("tolerance", DEFAULT_TOLERANCE))
            * numeric.eps(before.dtype)
            * magnitude
        )

    def infer(
        self, before: RawTensor, after: RawTensor, write: Writer, options: Mapping[str, Any]
    ) -> Inferred | None:
        """A truncated SVD of the difference: at rank `options["rank"]` (lossy), or without a
        rank at the rank the singular values show (as git-theta 0.2 inferred it), which
        keeps the change up to the dtype's rounding."""
        rank = options.get("rank")
        if len(before.shape) != 2 or not numeric.numeric(before.dtype):
            return None
        old = numeric.to_compute(before).astype(np.float64)
        new = numeric.to_compute(after).astype(np.float64)
        diff = new - old
        u, s, vt = np.linalg.svd(diff, full_matrices=False)
        r = min(int(rank), s.size) if rank else inferred_rank(s, new, before.dtype)
        if r == 0:
            return None  # nothing changed beyond rounding: stored as it is
        factor = "F64" if before.dtype == "F64" else "F32"
        code = "<f8" if factor == "F64" else "<f4"
        b = RawTensor(factor, (diff.shape[0], r), (u[:, :r] * s[:r]).astype(code).tobytes())
        a = RawTensor(factor, (r, diff.shape[1]), vt[:r].astype(code).tobytes())
        ref_a, ref_b = write(a), write(b)
        # Materialised by `git theta add` or kept as the user's merge (Updater.encode), so no
        # other implementation's rounding to allow for.
        record = low_rank_record(ref_a, ref_b, 1.0, transpose=False, tolerance=0.0)
        written = {ref_a.oid: a, ref_b.oid: b}
        rebuilt = numeric.to_compute(self.apply(before, record, lambda ref: written[ref.oid]))
        rebuilt = rebuilt.astype(np.float64)
        err = np.linalg.norm(rebuilt - old - diff)
        norm = np.linalg.norm(diff)
        how = f"rank {r}" if rank else f"rank {r} (inferred from the singular values)"
        note = (
            f"{how} keeps {1 - err / norm:.2%} of the change "
            f"(relative error {err / norm:.3g}, max |error| "
            f"{float(np.max(np.abs(rebuilt - old - diff))) if diff.size else 0.0:.3g})"
            if norm
            else f"{how}: no change"
        )
        return Inferred(record, exact=False, note=note)


def inferred_rank(singular: np.ndarray, after: np.ndarray, dtype: str) -> int:
    """How many singular values of a change stand above the noise the parameter's rounding
    makes: rounding W' adds at most eps/2 per element, a matrix whose spectral norm is at most
    eps/2 * ||W'||_F, so a singular value below eps * ||W'||_F is rounding, not change."""
    if not singular.size:
        return 0
    noise = numeric.eps(dtype) * float(np.linalg.norm(after))
    floor = max(noise, float(singular[0]) * max(after.shape) * np.finfo(np.float64).eps)
    return int(np.count_nonzero(singular > floor))
