"""A DiffReport as text (what `git diff` shows), JSON (for tools) or Markdown (for reviews).

The JSON shape is documented in docs/diff.md; every parameter record carries every key, with
null where a value does not apply or is not a finite number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from git_theta.diffing.numeric import DeltaStats
from git_theta.diffing.records import DiffReport, FileDiff, ParamDiff, ParamInfo
from git_theta.git.patch import quote_path

__all__ = [
    "FORMATS",
    "JSON_VERSION",
    "file_header",
    "file_lines",
    "file_text",
    "human_size",
    "render",
    "shape_text",
    "summary",
    "to_json",
    "to_markdown",
    "to_text",
]

JSON_VERSION = 1
_COLUMNS = (
    "status",
    "parameter",
    "dtype",
    "shape",
    "update",
    "stored",
    "||delta||",
    "rel.change",
    "max|delta|",
    "cosine",
    "changed",
    "note",
)
_MD_COLUMNS = (
    "status",
    "parameter",
    "dtype",
    "shape",
    "update",
    "stored",
    "‖Δ‖₂",
    "‖Δ‖/‖old‖",
    "max \\|Δ\\|",
    "cosine",
    "changed",
    "note",
)
_NA = "-"


# ---- numbers and sizes ------------------------------------------------------------------


def human_size(n: int | None) -> str:
    """`512 B`, `2.0 KiB`, ...; `-` for an unknown size."""
    if n is None:
        return _NA
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _num(x: float | int | None) -> str:
    if x is None:
        return _NA
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _relative(s: DeltaStats) -> str:
    # ||new - old|| / ||old|| of an all-zero tensor is no number a reader can use ("inf"):
    # say what happened instead.
    if s.old_l2 == 0 and s.delta_l2:
        return "from zero"
    return _num(s.relative_change)


def _cos(x: float | None) -> str:
    return _NA if x is None else "nan" if math.isnan(x) else f"{x:.6f}"


def _pct(x: float | None) -> str:
    return _NA if x is None else f"{100 * x:.4g}%"


def shape_text(shape: tuple[int, ...]) -> str:
    """`4x4`, `3`, or `scalar` for a 0-d tensor."""
    return "x".join(map(str, shape)) if shape else "scalar"


def _pair(p: ParamDiff, get: Callable[[ParamInfo], str]) -> str:
    """`old->new` when the value changed, else the one value."""
    if p.old is not None and p.new is not None and get(p.old) != get(p.new):
        return f"{get(p.old)}->{get(p.new)}"
    return get(p.side)


def _cells(p: ParamDiff) -> list[str]:
    s = p.stats
    note = p.note or ""
    if p.nonfinite:
        note = f"{note}; {p.nonfinite}" if note else str(p.nonfinite)
    cells = [
        p.status,
        p.name,
        _pair(p, lambda i: i.dtype),
        _pair(p, lambda i: shape_text(i.shape)),
        _pair(p, lambda i: i.update_type),
        human_size(p.added_bytes if p.status in ("modified", "moved") else p.side.stored_bytes),
    ]
    if p.status == "modified":
        cells += [
            _num(s.delta_l2) if s else _NA,
            _relative(s) if s else _NA,
            _num(s.max_abs_delta) if s else _NA,
            _cos(s.cosine) if s else _NA,
            _pct(s.fraction_changed) if s else _NA,
        ]
    else:
        cells += [""] * 5
    return [*cells, note]


def summary(f: FileDiff) -> str:
    """One line: counts by status, parameters before and after, bytes the change stores."""
    c = f.counts
    parts = [f"{c[s]} {s}" for s in ("modified", "added", "removed", "moved") if c.get(s)]
    if c.get("unchanged"):
        parts.append(f"{c['unchanged']} unchanged")
    if not any(c.get(s) for s in ("modified", "added", "removed", "moved")):
        parts.insert(0, "no parameter changed")
    line = f"{quote_path(f.path)}: {', '.join(parts)} ({f.old_params} -> {f.new_params} params"
    if f.status != "modified":
        line += f"; file {f.status}"
    elif f.old_format != f.new_format:
        line += f"; format {f.old_format} -> {f.new_format}"
    elif f.layout_changes:
        line += f"; {len(f.layout_changes)} non-tensor value(s) changed"
    elif f.layout_changed and parts[0] == "no parameter changed":
        line += "; only the file's layout changed"
    stored = f.stored_bytes
    if stored:
        line += f"; {human_size(stored)} new objects"
    return line + ")"


def _limit(f: FileDiff, top: int | None) -> tuple[Sequence[ParamDiff], int]:
    if top is None or top >= len(f.params):
        return f.params, 0
    return f.params[:top], len(f.params) - top


# ---- text -------------------------------------------------------------------------------


def file_header(path: str) -> str:
    """The first line of a file's block, like git's own `diff --git` line."""
    return f"diff --git-theta {quote_path(path, 'a/')} {quote_path(path, 'b/')}"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]


def file_lines(f: FileDiff, *, top: int | None = None) -> list[str]:
    """A file's block without its header: summary line, one row per parameter shown."""
    lines = [summary(f), *(f"  {change}" for change in f.layout_changes)]
    shown, hidden = _limit(f, top)
    if shown:
        lines += _table([list(_COLUMNS), *(_cells(p) for p in shown)])
    if hidden:
        lines.append(f"  ... {hidden} more parameter(s) not shown (--top {top})")
    return lines


def file_text(f: FileDiff, *, top: int | None = None) -> str:
    """A file's block: header, summary line, one row per parameter shown."""
    return "\n".join([file_header(f.path), *file_lines(f, top=top)]) + "\n"


def to_text(report: DiffReport, *, top: int | None = None) -> str:
    return "".join(file_text(f, top=top) for f in report.files)


# ---- markdown ---------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: DiffReport, *, top: int | None = None) -> str:
    out = [f"## Checkpoint changes: `{report.old}` → `{report.new}`", ""]
    if not report.files:
        out += ["No tracked checkpoint changed.", ""]
    for f in report.files:
        out += [f"### `{quote_path(f.path)}`", "", _md_escape(summary(f).split(": ", 1)[1]), ""]
        shown, hidden = _limit(f, top)
        if shown:
            out.append("| " + " | ".join(_MD_COLUMNS) + " |")
            out.append("|" + "|".join("---:" if 5 <= i <= 10 else "---" for i in range(12)) + "|")
            for p in shown:
                cells = _cells(p)
                cells[1] = f"`{cells[1]}`"
                out.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
            out.append("")
        if hidden:
            out += [f"{hidden} more parameter(s) not shown.", ""]
    return "\n".join(out)


# ---- json -------------------------------------------------------------------------------


def _finite(x: float | int | None) -> float | int | None:
    """JSON has no NaN or Infinity: those become null, as do values that do not apply."""
    if x is None or isinstance(x, int):
        return x
    return x if math.isfinite(x) else None


def _param_json(p: ParamDiff) -> dict[str, Any]:
    s = p.stats
    side = p.side
    return {
        "name": p.name,
        "status": p.status,
        "dtype": side.dtype,
        "shape": list(side.shape),
        "old_dtype": p.old.dtype if p.old else None,
        "old_shape": list(p.old.shape) if p.old else None,
        "update_type": side.update_type,
        "old_update_type": p.old.update_type if p.old else None,
        "stored_bytes": side.stored_bytes,
        "old_stored_bytes": p.old.stored_bytes if p.old else None,
        "added_bytes": p.added_bytes if p.status != "removed" else 0,
        "delta_l2": _finite(s.delta_l2) if s else None,
        "relative_change": _finite(s.relative_change) if s else None,
        "max_abs_delta": _finite(s.max_abs_delta) if s else None,
        "cosine": _finite(s.cosine) if s else None,
        "fraction_changed": s.fraction_changed if s else None,
        "old_l2": _finite(s.old_l2) if s else None,
        "new_l2": _finite(s.new_l2) if s else None,
        "nan_count": p.nonfinite.nan if p.nonfinite is not None else None,
        "inf_count": p.nonfinite.inf if p.nonfinite is not None else None,
        "note": p.note,
    }


def to_json(report: DiffReport, *, top: int | None = None) -> str:
    doc = {
        "version": JSON_VERSION,
        "old": report.old,
        "new": report.new,
        "files": [
            {
                "path": f.path,
                "status": f.status,
                "old_format": f.old_format,
                "new_format": f.new_format,
                "layout_changed": f.layout_changed,
                "layout_changes": list(f.layout_changes),
                "counts": f.counts,
                "old_params": f.old_params,
                "new_params": f.new_params,
                "stored_bytes": f.stored_bytes,
                "params": [_param_json(p) for p in _limit(f, top)[0]],
            }
            for f in report.files
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


FORMATS: dict[str, Callable[..., str]] = {
    "text": to_text,
    "json": to_json,
    "markdown": to_markdown,
}


def render(report: DiffReport, fmt: str, *, top: int | None = None) -> str:
    """`report` in one of FORMATS (text, json, markdown)."""
    return FORMATS[fmt](report, top=top)
