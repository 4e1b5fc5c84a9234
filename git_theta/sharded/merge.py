"""Three-way merge of a shard index (`model.safetensors.index.json`), parameter by parameter.

Each parameter's shard merges as a value: changed on one side takes that side, changed alike
on both keeps it, moved to different shards on the two sides (or moved on one and removed on
the other) is a conflict. `metadata.total_size` and `total_parameters` (which transformers
also writes) are the byte size and element count of the merged shards' tensors, each
parameter taken from the side its merge keeps (sharded/sizes.py reads the sides' shards from
git); where git does not say which commits it merges, they merge as sums, ours + theirs -
base, which is wrong only when both sides added, removed or resized the same parameter; `git
theta check` reports a wrong total_size. Other metadata keys merge three-way as values. The result is written as transformers writes it
(`json.dumps(indent=2, sort_keys=True)` and a newline); a conflicted parameter is written
with git's conflict markers around its two lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from git_theta.sharded.index import ShardIndex, parse_index

__all__ = ["IndexMerge", "Totals", "merge_indexes"]

# Sums over the shards' tensors: merged by difference, not as values.
_SUMS = ("total_size", "total_parameters")
_ABSENT = object()
# (the shard names base, ours and theirs map to, the merged weight_map) -> the merged
# shards' `total_size` and `total_parameters`, or None when they cannot be known.
Totals = Callable[[tuple[set[str], set[str], set[str]], dict[str, str]], dict[str, int] | None]


@dataclass(frozen=True)
class IndexMerge:
    """The merged index text, and the parameters both sides moved differently."""

    text: bytes
    conflicts: list[str]


def _pick(base: Any, ours: Any, theirs: Any) -> tuple[Any, bool]:
    """The three-way value and whether it is a conflict (then ours)."""
    if ours == theirs or theirs == base:
        return ours, False
    if ours == base:
        return theirs, False
    return ours, True


def merge_indexes(
    base: bytes | None,
    ours: bytes,
    theirs: bytes,
    *,
    path: str,
    labels: tuple[str, str],
    totals: Totals | None = None,
) -> IndexMerge:
    """Merge three versions of an index (`base` None when the file is new on both sides).

    Args:
        totals: gives `total_size` and `total_parameters` from the merged shards (else the
            sides' are summed).

    Raises:
        CheckpointError: a version is not a valid index (one line naming `path` and the side).
    """
    b = (
        parse_index(base, path=f"{path} (base)")
        if base
        else ShardIndex(path, {}, None, {"metadata": {}, "weight_map": {}})
    )
    o = parse_index(ours, path=f"{path} (ours)")
    t = parse_index(theirs, path=f"{path} (theirs)")
    weight_map: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    for name in sorted(set(b.weight_map) | set(o.weight_map) | set(t.weight_map)):
        bs, os_, ts = (x.weight_map.get(name) for x in (b, o, t))
        value, conflict = _pick(bs, os_, ts)
        if conflict:
            conflicts[name] = ts if ts is not None else "(removed)"
            if value is None:  # ours removed it: show theirs' line against nothing
                value = ts
        if value is not None:
            weight_map[name] = value
    metadata = _merge_metadata(b.document, o.document, t.document)
    if totals is not None and any(key in metadata for key in _SUMS):
        exact = totals((set(b.shards), set(o.shards), set(t.shards)), weight_map) or {}
        metadata.update({key: exact[key] for key in _SUMS if key in metadata and key in exact})
    document = dict(o.document)
    for key in set(t.document) - set(o.document) - set(b.document):
        document[key] = t.document[key]
    document["metadata"] = metadata
    document["weight_map"] = weight_map
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if conflicts:
        text = _mark(text, weight_map, o.weight_map, conflicts, labels)
    return IndexMerge(text.encode("utf-8"), sorted(conflicts))


def _meta(document: dict[str, Any]) -> dict[str, Any]:
    meta = document.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _merge_metadata(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    b, o, t = _meta(base), _meta(ours), _meta(theirs)
    merged: dict[str, Any] = {}
    for key in list(dict.fromkeys([*o, *t])):
        bv, ov, tv = (m.get(key, _ABSENT) for m in (b, o, t))
        if key in _SUMS and all(isinstance(v, int) for v in (ov, tv)):
            merged[key] = ov + tv - (bv if isinstance(bv, int) else 0)
            continue
        value, _ = _pick(bv, ov, tv)
        if value is not _ABSENT:
            merged[key] = value
    return merged


def _mark(
    text: str,
    weight_map: dict[str, str],
    ours: dict[str, str],
    conflicts: dict[str, str],
    labels: tuple[str, str],
) -> str:
    """Put git's conflict markers around each conflicted weight_map line."""
    lines = text.split("\n")
    for name, theirs in conflicts.items():
        key = json.dumps(name, ensure_ascii=False)
        shown = json.dumps(weight_map[name], ensure_ascii=False)
        for i, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith(f"{key}: {shown}"):
                comma = "," if stripped.endswith(",") else ""
                indent = line[: len(line) - len(line.lstrip())]
                ours_line = (
                    f"{indent}{key}: {json.dumps(ours[name])}{comma}" if name in ours else None
                )
                theirs_line = (
                    f"{indent}{key}: {json.dumps(theirs)}{comma}" if theirs != "(removed)" else None
                )
                block = [f"<<<<<<< {labels[0]}"]
                block += [ours_line] if ours_line else []
                block += ["======="]
                block += [theirs_line] if theirs_line else []
                block += [f">>>>>>> {labels[1]}"]
                lines[i : i + 1] = block
                break
    return "\n".join(lines)
