"""Three-way merge of metadata, parameter by parameter, without reading any tensor.

Two entries are "the same" when their (hash, dtype, shape) are equal. With base O, ours A and
theirs B (absent = None):

    O      A      B      result
    -      a      -      a (added on our side)
    -      -      b      b (added on their side)
    -      a      a      a (added identically)
    -      a      b      conflict: added on both sides
    o      o      b      b (changed or deleted on their side only)
    o      a      o      a (changed or deleted on our side only)
    o      a      a      a (changed identically; both deleted -> deleted)
    o      a      -      conflict: modified on our side, deleted on theirs
    o      -      b      conflict: deleted on our side, modified on theirs
    o      a      b      conflict: modified on both sides (for a strategy)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from git_theta.metadata import Metadata, ParamEntry

__all__ = ["Conflict", "ThreeWay", "merged_layout", "n_way", "three_way"]


@dataclass(frozen=True)
class Conflict:
    """A parameter the three-way rules cannot settle.

    Attributes:
        name: the parameter.
        kind: `both-modified`, `add-add`, `modify-delete` or `delete-modify`.
        base: the base entry (None where absent).
        sides: the entries of the sides, ours first and theirs last (None where absent).
        reason: why a strategy left it unresolved (empty until one tried).
    """

    name: str
    kind: str
    base: ParamEntry | None
    sides: tuple[ParamEntry | None, ...]
    reason: str = ""

    @property
    def ours(self) -> ParamEntry | None:
        return self.sides[0]

    @property
    def theirs(self) -> ParamEntry | None:
        return self.sides[-1]

    def describe(self) -> str:
        two = len(self.sides) == 2
        text = {
            "both-modified": "modified on both sides" if two else "modified on several sides",
            "add-add": "added differently on both sides" if two else "added differently",
            "modify-delete": "modified by us, deleted by them" if two else "modified and deleted",
            "delete-modify": "deleted by us, modified by them" if two else "deleted and modified",
        }[self.kind]
        return f"{self.name} ({text}; {self.reason})" if self.reason else f"{self.name} ({text})"


@dataclass(frozen=True)
class ThreeWay:
    """The settled parameters and the conflicts, in name order."""

    merged: dict[str, ParamEntry]
    conflicts: list[Conflict]


def _key(entry: ParamEntry | None) -> tuple[str, str, tuple[int, ...]] | None:
    return None if entry is None else (entry.hash, entry.dtype, entry.shape)


def three_way(base: Metadata | None, ours: Metadata, theirs: Metadata) -> ThreeWay:
    """Merge the parameter tables of `ours` and `theirs` against `base` (None: no common base)."""
    return n_way(base, [ours, theirs])


def n_way(base: Metadata | None, sides: Sequence[Metadata]) -> ThreeWay:
    """The table above for any number of sides: a parameter is settled when every side that
    differs from the base holds the same version (that version wins, a deletion included);
    otherwise it is a conflict carrying every side's entry."""
    base_params: Mapping[str, ParamEntry] = base.params if base is not None else {}
    names = set(base_params).union(*(s.params for s in sides))
    merged: dict[str, ParamEntry] = {}
    conflicts: list[Conflict] = []
    for name in sorted(names):
        o = base_params.get(name)
        entries = tuple(s.params.get(name) for s in sides)
        changed = {_key(e): e for e in entries if _key(e) != _key(o)}
        if len(changed) <= 1:
            result = next(iter(changed.values())) if changed else o
            if result is not None:
                merged[name] = result
            continue
        if o is None:
            kind = "add-add"
        elif entries[0] is None:
            kind = "delete-modify"
        elif None in entries:
            kind = "modify-delete"
        else:
            kind = "both-modified"
        conflicts.append(Conflict(name, kind, o, entries))
    return ThreeWay(merged, conflicts)


def merged_layout(params: Mapping[str, ParamEntry], *sides: Metadata) -> ParamEntry | None:
    """The layout of the first side whose parameters have exactly the merged names, dtypes and
    shapes (a safetensors layout records offsets, so only then is it valid); else None, and
    the format writes a fresh canonical file."""
    wanted = {n: (e.dtype, e.shape) for n, e in params.items()}
    for side in sides:
        if {n: (e.dtype, e.shape) for n, e in side.params.items()} == wanted:
            return side.layout
    return None
