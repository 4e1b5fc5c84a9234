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

from collections.abc import Mapping
from dataclasses import dataclass

from git_theta.metadata import Metadata, ParamEntry

__all__ = ["Conflict", "ThreeWay", "merged_layout", "three_way"]


@dataclass(frozen=True)
class Conflict:
    """A parameter the three-way rules cannot settle.

    Attributes:
        name: the parameter.
        kind: `both-modified`, `add-add`, `modify-delete` or `delete-modify`.
        base, ours, theirs: the entries (None where absent).
        reason: why a strategy left it unresolved (empty until one tried).
    """

    name: str
    kind: str
    base: ParamEntry | None
    ours: ParamEntry | None
    theirs: ParamEntry | None
    reason: str = ""

    def describe(self) -> str:
        text = {
            "both-modified": "modified on both sides",
            "add-add": "added differently on both sides",
            "modify-delete": "modified by us, deleted by them",
            "delete-modify": "deleted by us, modified by them",
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
    base_params: Mapping[str, ParamEntry] = base.params if base is not None else {}
    merged: dict[str, ParamEntry] = {}
    conflicts: list[Conflict] = []
    for name in sorted(set(base_params) | set(ours.params) | set(theirs.params)):
        o, a, b = base_params.get(name), ours.params.get(name), theirs.params.get(name)
        ko, ka, kb = _key(o), _key(a), _key(b)
        if ka == kb:
            result = a
        elif ka == ko:
            result = b
        elif kb == ko:
            result = a
        else:
            if o is None:
                kind = "add-add"
            elif b is None:
                kind = "modify-delete"
            elif a is None:
                kind = "delete-modify"
            else:
                kind = "both-modified"
            conflicts.append(Conflict(name, kind, o, a, b))
            continue
        if result is not None:
            merged[name] = result
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
