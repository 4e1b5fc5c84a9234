"""Compare two versions of a checkpoint parameter by parameter.

Parameters whose hash, dtype and shape agree are unchanged and never read. Changed ones are
read one at a time (both versions of one parameter, then the next), and each is dropped
before the next is read. When one version is a checkpoint file (the work tree) and the
other is stored, the file is read once: each tensor is hashed, and measured right away if
it changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase

from git_theta.diffing.numeric import delta_stats, nonfinite
from git_theta.diffing.records import FileDiff, ParamDiff, ParamInfo, Status
from git_theta.diffing.sides import FileSide, Side, StoredSide
from git_theta.errors import MissingObjectError
from git_theta.tensor import PACKED_BITS, RawTensor

__all__ = ["FETCH_HINT", "CompareOptions", "compare", "raise_for_missing", "selected"]

FETCH_HINT = "fetch them with `git theta fetch`"
# Names listed in a missing-objects message before "and N more".
MAX_NAMED = 5
_STATUSES = ("added", "removed", "modified", "unchanged")


@dataclass(frozen=True)
class CompareOptions:
    """What to compute beyond statuses.

    Attributes:
        stats: read modified tensors (both versions) for delta statistics.
        nonfinite: read added and modified tensors (new version) to count NaN and Inf.
        params: glob patterns; only parameters matching one are compared (all when empty).
        unchanged: keep records for unchanged parameters too.
    """

    stats: bool = True
    nonfinite: bool = False
    params: tuple[str, ...] = ()
    unchanged: bool = False


def selected(name: str, patterns: Sequence[str]) -> bool:
    """Whether a parameter name matches one of the glob patterns (any name when none)."""
    return not patterns or any(fnmatchcase(name, p) for p in patterns)


def _status(old: ParamInfo | None, new: ParamInfo | None) -> Status:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    return "unchanged" if old.same_tensor(new) else "modified"


# A tensor already read by the single pass through a file side: (that side, the tensor).
_InHand = tuple[Side, RawTensor]


class _Comparison:
    """The state of one compare(): options, both sides, records so far."""

    def __init__(self, old: Side | None, new: Side | None, options: CompareOptions) -> None:
        self.old, self.new, self.options = old, new, options
        self.records: list[ParamDiff] = []
        self.counts: Counter[str] = Counter()
        self.missing: list[str] = []
        # Loads one version of a parameter while this thread loads the other: decompression
        # and hashing release the GIL, so the two overlap.
        self.pool = ThreadPoolExecutor(max_workers=1)

    def visit(
        self, name: str, o: ParamInfo | None, n: ParamInfo | None, in_hand: _InHand | None
    ) -> None:
        if not selected(name, self.options.params):
            return
        st = _status(o, n)
        self.counts[st] += 1
        if st == "unchanged":
            if self.options.unchanged:
                self.records.append(ParamDiff(name, st, o, n))
            return
        shape_changed = st == "modified" and o is not None and n is not None and o.shape != n.shape
        shape_note = "shape changed" if shape_changed else None
        need_old = st == "modified" and self.options.stats and not shape_changed
        need_new = st != "removed" and (need_old or self.options.nonfinite)
        if not (need_old or need_new):
            self.records.append(ParamDiff(name, st, o, n, note=shape_note))
            return
        if any(info is not None and info.dtype in PACKED_BITS for info in (o, n)):
            # Sub-byte floats are stored and compared as bytes; their values are never read.
            note = shape_note or "packed dtype: compared by hash only"
            self.records.append(ParamDiff(name, st, o, n, note=note))
            return
        lacking = [
            side.label
            for side, needed in ((self.old, need_old), (self.new, need_new))
            if needed and side is not None and side.missing([name])
        ]
        if lacking:
            self.missing += [f"{name} ({label})" for label in lacking]
            self.records.append(ParamDiff(name, st, o, n, note="objects not fetched"))
            return
        old_t, new_t = self._load(name, need_old, need_new, in_hand)
        if (need_old and old_t is None) or new_t is None:
            note = "update chain: compared by hash only"
            self.records.append(ParamDiff(name, st, o, n, note=note))
            return
        stats = delta_stats(old_t, new_t) if old_t is not None else None
        counted = stats.new_nonfinite if stats is not None else nonfinite(new_t)
        self.records.append(ParamDiff(name, st, o, n, stats, counted, shape_note))

    def _load(
        self, name: str, need_old: bool, need_new: bool, in_hand: _InHand | None
    ) -> tuple[RawTensor | None, RawTensor | None]:
        def here(side: Side | None) -> RawTensor | None:
            assert side is not None
            return in_hand[1] if in_hand is not None and in_hand[0] is side else side.load(name)

        if need_old and need_new and isinstance(self.old, StoredSide) and in_hand is None:
            later = self.pool.submit(self.old.load, name)
            new_t = here(self.new)
            return later.result(), new_t
        return (here(self.old) if need_old else None), (here(self.new) if need_new else None)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for side in (self.old, self.new):
            if isinstance(side, FileSide):
                side.close()


def compare(
    path: str, old: Side | None, new: Side | None, options: CompareOptions | None = None
) -> FileDiff:
    """Compare version `old` of the checkpoint at `path` with version `new` (None: absent).

    Objects that are not in the local store do not stop the comparison: the parameters that
    need them get no statistics, and FileDiff.missing names them (see raise_for_missing).

    Raises:
        CorruptObjectError: an object does not hold what the metadata says.
        CheckpointError: a file side is not a readable checkpoint.
    """
    run = _Comparison(old, new, options or CompareOptions())
    try:
        streamed = _streamed(old, new)
        if streamed is not None:
            other = new if streamed is old else old
            other_params = other.params() if other is not None else {}
            for name, info, tensor in streamed.scan():
                theirs = other_params.get(name)
                o, n = (info, theirs) if streamed is old else (theirs, info)
                run.visit(name, o, n, in_hand=(streamed, tensor))
            seen = streamed.params()
            for name in sorted(other_params.keys() - seen.keys()):
                theirs = other_params[name]
                o, n = (None, theirs) if streamed is old else (theirs, None)
                run.visit(name, o, n, in_hand=None)
        else:
            old_params = old.params() if old is not None else {}
            new_params = new.params() if new is not None else {}
            # Loads from a file side (both versions are files) are cheapest in its order.
            first: Mapping[str, ParamInfo] = new_params if isinstance(new, FileSide) else {}
            for name in dict.fromkeys([*first, *sorted(new_params), *sorted(old_params)]):
                run.visit(name, old_params.get(name), new_params.get(name), in_hand=None)
    finally:
        run.close()
    run.records.sort(key=ParamDiff.sort_key)
    layout_changed = bool(old and new and old.layout_hash != new.layout_hash)
    return FileDiff(
        path=path,
        params=tuple(run.records),
        counts={s: run.counts[s] for s in _STATUSES},
        old_params=len(old.params()) if old is not None else 0,
        new_params=len(new.params()) if new is not None else 0,
        old_format=old.format if old is not None else None,
        new_format=new.format if new is not None else None,
        layout_changed=layout_changed,
        missing=tuple(run.missing),
        layout_changes=layout_changes(old, new) if layout_changed else (),
    )


def layout_changes(old: Side | None, new: Side | None) -> tuple[str, ...]:
    """`key: old -> new` for each non-tensor value that differs between two versions of the
    same format (added and removed keys too); () when either side cannot name its values."""
    if old is None or new is None or old.format != new.format:
        return ()
    before, after = old.layout_values(), new.layout_values()
    if before is None or after is None:
        return ()
    absent = "(absent)"
    return tuple(
        f"{key}: {before.get(key, absent)} -> {after.get(key, absent)}"
        for key in dict.fromkeys([*before, *after])
        if before.get(key) != after.get(key)
    )


def _streamed(old: Side | None, new: Side | None) -> FileSide | None:
    """The side to read in a single pass: the one file side, when the other is not a file
    (two files are hashed first, then read again for their changed tensors)."""
    files = [s for s in (old, new) if isinstance(s, FileSide)]
    return files[0] if len(files) == 1 else None


def raise_for_missing(files: Sequence[FileDiff]) -> None:
    """Raise MissingObjectError naming the parameters whose objects are not fetched yet.

    Raises:
        MissingObjectError: some FileDiff has missing objects.
    """
    lacking = [(f.path, m) for f in files for m in f.missing]
    if not lacking:
        return
    shown = "; ".join(f"{path}: {name}" for path, name in lacking[:MAX_NAMED])
    more = f" and {len(lacking) - MAX_NAMED} more" if len(lacking) > MAX_NAMED else ""
    raise MissingObjectError(
        f"objects not in the local store for {len(lacking)} parameter(s): {shown}{more}; "
        + FETCH_HINT
    )
