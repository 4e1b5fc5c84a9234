"""What the resolver shows about each conflicting parameter: shape, dtype, how far each side
moved it from the base, and whether the two moves point the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from git_theta.compute import MERGEABLE_DTYPES
from git_theta.merges.engine import FileMerge, read_param
from git_theta.merges.three_way import Conflict
from git_theta.metadata import ParamEntry

__all__ = ["ConflictStats", "conflict_stats", "format_table"]

_INTEGER_PREFIXES = ("I", "U", "BOOL")


@dataclass(frozen=True)
class ConflictStats:
    """One conflicting parameter as the resolver lists it.

    Attributes:
        norms: ||side - base|| (L2, float64) per side; None where the side is deleted, there
            is no base of the same shape, or the dtype has no numeric values we read.
        cosine: cosine between the first two sides' changes; None when a norm is None or 0.
    """

    conflict: Conflict
    shape: tuple[int, ...] | None
    dtype: str
    norms: tuple[float | None, ...]
    cosine: float | None


def _values(fm: FileMerge, entry: ParamEntry, name: str) -> np.ndarray | None:
    if entry.dtype in MERGEABLE_DTYPES:
        return fm.values(entry, name).astype(np.float64).ravel()
    if entry.dtype.startswith(_INTEGER_PREFIXES):
        return read_param(fm.store, entry, fm.path, name).to_numpy().astype(np.float64).ravel()
    return None  # fp8, complex: shown without numbers


def conflict_stats(fm: FileMerge, conflict: Conflict) -> ConflictStats:
    """Stats of one conflict, reading its tensors (objects must be present: FileMerge.prefetch)."""
    present = [e for e in conflict.sides if e is not None]
    first = present[0] if present else conflict.base
    shape = first.shape if first is not None else None
    dtype = first.dtype if first is not None else "?"
    o = conflict.base
    base = _values(fm, o, conflict.name) if o is not None else None
    deltas: list[np.ndarray | None] = []
    for e in conflict.sides:
        if e is None or base is None or o is None or (e.dtype, e.shape) != (o.dtype, o.shape):
            deltas.append(None)
            continue
        v = _values(fm, e, conflict.name)
        deltas.append(None if v is None else v - base)
    norms = tuple(None if d is None else float(np.linalg.norm(d)) for d in deltas)
    cosine = None
    if len(deltas) >= 2 and deltas[0] is not None and deltas[1] is not None:
        n0, n1 = norms[0], norms[1]
        if n0 and n1:
            cosine = float(np.dot(deltas[0], deltas[1]) / (n0 * n1))
    return ConflictStats(conflict, shape, dtype, norms, cosine)


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def format_table(stats: Sequence[ConflictStats], chosen: Mapping[str, str]) -> str:
    """The numbered table of conflicts, with the strategy chosen so far for each."""
    n_sides = len(stats[0].conflict.sides) if stats else 2
    side_names = ["ours", "theirs"] if n_sides == 2 else [f"m{i + 1}" for i in range(n_sides)]
    header = [
        "#",
        "parameter",
        "shape",
        "dtype",
        *(f"|{s}-base|" for s in side_names),
        "cos",
        "conflict",
        "strategy",
    ]
    rows = [header]
    for i, st in enumerate(stats, 1):
        c = st.conflict
        norms = [
            "deleted" if e is None else _number(n) for e, n in zip(c.sides, st.norms, strict=True)
        ]
        kind = c.kind if st.dtype in MERGEABLE_DTYPES else f"{c.kind}, pick a side"
        rows.append(
            [
                str(i),
                c.name,
                "-" if st.shape is None else str(list(st.shape)),
                st.dtype,
                *norms,
                "-" if st.cosine is None else f"{st.cosine:+.3f}",
                kind,
                chosen.get(c.name, "?"),
            ]
        )
    widths = [max(len(r[k]) for r in rows) for k in range(len(header))]
    return "".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )
