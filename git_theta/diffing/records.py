"""The typed results of comparing two versions of a checkpoint, ready to render or check."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from git_theta.diffing.numeric import DeltaStats, Nonfinite

__all__ = ["DiffReport", "FileDiff", "ParamDiff", "ParamInfo", "Status"]

Status = Literal["added", "removed", "modified", "moved", "unchanged"]

# Row order after the modified ones (which go by relative change, largest first).
_STATUS_ORDER: dict[str, int] = {
    "modified": 0,
    "added": 1,
    "removed": 2,
    "moved": 3,
    "unchanged": 4,
}


@dataclass(frozen=True)
class ParamInfo:
    """What one side knows about a parameter without reading its tensor.

    Attributes:
        dtype: safetensors dtype name.
        shape: dimensions.
        hash: content hash of the raw bytes (`xxh3_128:<hex>`); decides "unchanged".
        update_type: `dense`, or the last update of its chain (`low-rank`, `ia3`, `sparse`).
        stored_bytes: bytes of the objects that hold it; None for a work tree tensor that is
            not stored yet.
        objects: (oid, size) of those objects, so a version can tell which are new (an update
            shares its base's objects).
    """

    dtype: str
    shape: tuple[int, ...]
    hash: str
    update_type: str = "dense"
    stored_bytes: int | None = None
    objects: tuple[tuple[str, int], ...] = ()

    def same_tensor(self, other: ParamInfo) -> bool:
        return (self.hash, self.dtype, self.shape) == (other.hash, other.dtype, other.shape)


@dataclass(frozen=True)
class ParamDiff:
    """One parameter compared across two versions.

    Attributes:
        name: the parameter's name in the checkpoint.
        status: added, removed, modified, unchanged, or moved (between the shards of one
            sharded checkpoint, its bytes unchanged).
        old: the old side (None when added).
        new: the new side (None when removed).
        stats: delta statistics; None unless modified with the same shape and both tensors
            read (see `note` for why not).
        nonfinite: NaN/Inf count of the new tensor, when it was read.
        note: why statistics are missing, when they are.
    """

    name: str
    status: Status
    old: ParamInfo | None
    new: ParamInfo | None
    stats: DeltaStats | None = None
    nonfinite: Nonfinite | None = None
    note: str | None = None

    @property
    def added_bytes(self) -> int | None:
        """Bytes of the new side's objects that the old side does not have (a LoRA update
        adds its factors, not its base); None for a work tree tensor."""
        if self.new is None:
            return 0
        if self.new.stored_bytes is None or self.old is None or not self.new.objects:
            return self.new.stored_bytes
        old = {oid for oid, _ in self.old.objects}
        return sum(size for oid, size in self.new.objects if oid not in old)

    @property
    def side(self) -> ParamInfo:
        """The newest side that exists (old for a removed parameter)."""
        side = self.new or self.old
        assert side is not None
        return side

    @property
    def dtype_changed(self) -> bool:
        return self.old is not None and self.new is not None and self.old.dtype != self.new.dtype

    @property
    def shape_changed(self) -> bool:
        return self.old is not None and self.new is not None and self.old.shape != self.new.shape

    @property
    def relative_change(self) -> float | None:
        return self.stats.relative_change if self.stats else None

    def sort_key(self) -> tuple[int, float, str]:
        """Modified first, by relative change (largest, then undefined, then those without
        one), then added, removed, unchanged; by name within each."""
        rel = self.relative_change
        if self.status != "modified":
            weight = 0.0
        elif rel is None:
            weight = 2.0
        elif math.isnan(rel):
            weight = -math.inf
        else:
            weight = -rel
        return (_STATUS_ORDER[self.status], weight, self.name)


@dataclass(frozen=True)
class FileDiff:
    """One checkpoint compared across two versions.

    Attributes:
        path: the path in the repository.
        params: the parameters shown, sorted (see ParamDiff.sort_key); unchanged ones only
            when asked for.
        counts: status -> number of parameters with it (all, not just those shown).
        old_params: parameters in the old version (0 when the file is added).
        new_params: parameters in the new version.
        old_format: checkpoint format of the old version, None when absent.
        new_format: of the new version.
        layout_changed: the non-tensor part (a safetensors header's metadata, a pickle's
            structure) differs.
        missing: `name (side)` for each tensor whose object is not in the local store.
        layout_changes: one `key: old -> new` line per non-tensor value of the layout that
            changed (a pickle's step counter, a safetensors metadata entry), where known.
    """

    path: str
    params: tuple[ParamDiff, ...]
    counts: dict[str, int] = field(default_factory=dict)
    old_params: int = 0
    new_params: int = 0
    old_format: str | None = None
    new_format: str | None = None
    layout_changed: bool = False
    missing: tuple[str, ...] = ()
    layout_changes: tuple[str, ...] = ()

    @property
    def status(self) -> Literal["added", "removed", "modified"]:
        if self.old_format is None:
            return "added"
        if self.new_format is None:
            return "removed"
        return "modified"

    @property
    def changed(self) -> bool:
        return bool(
            self.layout_changed
            or self.status != "modified"
            or self.old_format != self.new_format
            or any(self.counts.get(s) for s in ("added", "removed", "modified", "moved"))
        )

    @property
    def stored_bytes(self) -> int | None:
        """Object bytes that the new version adds (added and modified tensors); None when
        the new side is a work tree file, whose tensors are not stored yet."""
        total = 0
        for p in self.params:
            if p.status in ("added", "modified") and p.new is not None:
                added = p.added_bytes
                if added is None:
                    return None
                total += added
        return total


@dataclass(frozen=True)
class DiffReport:
    """Every checkpoint that differs between two endpoints.

    Attributes:
        old: what the old side is (`HEAD~1`, `index`).
        new: what the new side is (`HEAD`, `working tree`).
        files: one entry per tracked checkpoint that changed, by path.
    """

    old: str
    new: str
    files: tuple[FileDiff, ...]
