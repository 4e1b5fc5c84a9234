"""One version of a checkpoint as lines of text, laid out so that git's line diff of two
versions reads as a per-parameter summary (`git show` and `git log -p`, through textconv).

    safetensors checkpoint: 2 parameters, 10 elements, 40 B of tensors
    a  F32  2x3  l2=7.4162  mean=2.5  max|x|=5  hash=2d0408b485dd
    b  F32  4  l2=2  mean=1  max|x|=1  hash=1d6b9c1fe413
    (file layout: all but the tensors)  hash=8025ea7f9036

- The summary line comes first: when the totals change, it is a -/+ pair at the top.
- Then one line per parameter, sorted by name, so the two versions line up: an added or
  removed parameter is one + or - line, a modified one a -/+ pair showing old and new values.
- A last line hashes the rest of the file (header, format metadata), so a change there shows.
- Each line stands alone (no column padding: one longer name would otherwise change every
  line), and ends with the content hash, so a change below the printed precision still shows.

The lines are a function of the tensors alone, which is what makes git's textconv cache
(keyed by the metadata blob; `diff.theta.cachetextconv`) correct. LAYOUT numbers this layout:
change it whenever a line would read differently, so that cached texts are not mixed with
new ones (see git_theta/commands/textconv.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from git_theta.diffing.compare import FETCH_HINT, MAX_NAMED
from git_theta.diffing.numeric import Nonfinite, TensorStats, tensor_stats
from git_theta.diffing.records import ParamInfo
from git_theta.diffing.render import human_size, shape_text
from git_theta.diffing.sides import FileSide, Side
from git_theta.errors import MissingObjectError
from git_theta.tensor import PACKED_BITS, RawTensor, dtype_nbytes

__all__ = ["LAYOUT", "LAYOUT_LINE", "SHOWN_HASH_DIGITS", "listing"]

# Layout 1 was one `name<TAB>dtype<TAB>shape<TAB>hash` line per parameter.
LAYOUT = 2
# Enough of a content hash to tell versions apart at a glance.
SHOWN_HASH_DIGITS = 12
# Last line, for the rest of the file; the parenthesis keeps it apart from parameter names.
LAYOUT_LINE = "(file layout: all but the tensors)"
# Significant digits of the statistics: a relative change of 1e-5 still shows.
_DIGITS = 6


@dataclass(frozen=True)
class _Row:
    name: str
    info: ParamInfo
    stats: TensorStats | None


def _short(digest: str) -> str:
    return digest.split(":")[-1][:SHOWN_HASH_DIGITS]


def _num(x: float | complex | int | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, complex):
        return f"{x.real:.{_DIGITS}g}{x.imag:+.{_DIGITS}g}j"
    return f"{x:.{_DIGITS}g}"


def _line(row: _Row) -> str:
    cells = [row.name, row.info.dtype, shape_text(row.info.shape)]
    s = row.stats
    if s is None:
        packed = row.info.dtype in PACKED_BITS
        cells.append(
            "(packed dtype: values not read)" if packed else "(update chain: values not read)"
        )
    elif s.numel == 0:
        cells.append("empty")
    else:
        cells += [f"l2={_num(s.l2)}", f"mean={_num(s.mean)}", f"max|x|={_num(s.max_abs)}"]
        if s.nonfinite.nan:
            cells.append(f"nan={s.nonfinite.nan}")
        if s.nonfinite.inf:
            cells.append(f"inf={s.nonfinite.inf}")
    cells.append(f"hash={_short(row.info.hash)}")
    return "  ".join(cells)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _summary(side: Side, rows: list[_Row]) -> str:
    numel = sum(math.prod(r.info.shape) for r in rows)
    nbytes = sum(dtype_nbytes(r.info.dtype, r.info.shape) for r in rows)
    line = (
        f"{side.format} checkpoint: {_plural(len(rows), 'parameter')}, "
        f"{_plural(numel, 'element')}, "
        f"{human_size(nbytes)} of tensors"
    )
    bad = Nonfinite(
        sum(r.stats.nonfinite.nan for r in rows if r.stats is not None),
        sum(r.stats.nonfinite.inf for r in rows if r.stats is not None),
    )
    if bad:
        line += f"; {bad}"
    return line


def _tensors(side: Side) -> Iterator[tuple[str, ParamInfo, RawTensor | None]]:
    """Every parameter with its tensor, one at a time: a file in one pass, in its order."""
    if isinstance(side, FileSide):
        yield from side.scan()
        return
    params = side.params()
    missing = side.missing(list(params))
    if missing:
        shown = ", ".join(missing[:MAX_NAMED])
        more = f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else ""
        raise MissingObjectError(
            f"{side.label}: objects not in the local store for {len(missing)} parameter(s): "
            f"{shown}{more}; {FETCH_HINT}"
        )
    for name, info in params.items():
        yield name, info, side.load(name)


def listing(side: Side) -> Iterator[str]:
    """The lines (without newlines) that stand for `side`: the summary, then one per
    parameter by name. Reads each tensor once, one at a time.

    Raises:
        MissingObjectError: a stored side whose objects are not fetched; names them.
        CheckpointError: a file side is not a readable checkpoint.
    """
    rows = [
        _Row(
            name,
            info,
            tensor_stats(tensor)
            if tensor is not None and tensor.dtype not in PACKED_BITS
            else None,
        )
        for name, info, tensor in _tensors(side)
    ]
    rows.sort(key=lambda r: r.name)
    yield _summary(side, rows)
    for row in rows:
        yield _line(row)
    # The file's non-tensor bytes (a safetensors header with its __metadata__, a pickle's
    # structure): a change there shows even when every tensor is the same.
    if side.layout_hash is not None:
        yield f"{LAYOUT_LINE}  hash={_short(side.layout_hash)}"
