"""How a changed tensor is stored when a checkpoint is cleaned: the update policy.

`auto` (the default) picks per changed tensor whichever of dense, sparse and delta stores
smallest, estimated on a sample (git_theta/updates/choice.py); all three are exact. `dense`
stores a new object. `sparse` stores the changed entries against the previous version; `delta`
the XOR of the bit patterns with it, entropy-coded; `low-rank` with a rank stores a truncated SVD of the difference (lossy, reported);
`low-rank`/`ia3` with an adapter store the adapter's factors or vectors for the parameters it
covers, after checking that the file holds the committed version plus the adapter (within the
rounding PEFT's merge makes) or the committed version itself (then `git theta add` writes the
merged weights). Every entry stays self-contained; a chain longer than `max_chain` becomes a
dense snapshot.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from git_theta.errors import CheckpointError, ConfigError
from git_theta.metadata import ObjectRef, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import PACKED_BITS, BufferPool, RawTensor, content_hash
from git_theta.updates import get_update_type
from git_theta.updates.adapted import MERGED_KEY, AdapterSteps, read_masks
from git_theta.updates.rebuild import EXACT_TYPES, rebuild
from git_theta.updates.snapshot import STAR_KINDS, against_snapshot

if TYPE_CHECKING:
    from git_theta.formats.base import PagedTensor
    from git_theta.updates.peft import AdapterUpdate

# numpy and the update types' modules are imported where a tensor is first updated, so
# cleaning without updates (every plain `git add`) does not pay for them.

__all__ = [
    "DEFAULT_MAX_CHAIN",
    "DEFAULT_POLICY_KIND",
    "MERGED_KEY",
    "POLICY_KINDS",
    "CleanReport",
    "UpdatePolicy",
    "Updater",
    "merged_hash",
]

POLICY_KINDS = ("dense", "sparse", "delta", "low-rank", "ia3", "auto")
# What a changed tensor gets when nothing is configured: `auto` (the smallest of dense, sparse
# and delta, each version against the snapshot). A full fine-tune's checkpoints store in a
# fraction of a dense copy (docs/updates.md); adding a fully changed checkpoint takes 1.05x the
# wall time of a dense add at 1 GiB, 1.26x at 256 MiB (benchmarks/bench_delta.py).
DEFAULT_POLICY_KIND = "auto"
DEFAULT_MAX_CHAIN = 16


@dataclass(frozen=True)
class UpdatePolicy:
    """What the user asked for (flags of `git theta add`, or configuration).

    Attributes:
        kind: one of POLICY_KINDS.
        path: a PEFT adapter directory (or its weights file) for low-rank and ia3.
        rank: the rank of a truncated SVD for low-rank without an adapter.
        max_chain: updates an entry may carry before it is compacted to a dense snapshot.
        tolerance: scales the rounding allowance recorded with adapter updates.
    """

    kind: str = DEFAULT_POLICY_KIND
    path: Path | None = None
    rank: int | None = None
    data: Path | None = None  # git-theta 0.2's side file (git_theta/updates/side_file.py)
    max_chain: int | None = None  # None: theta.maxUpdateChain, else DEFAULT_MAX_CHAIN
    tolerance: float = 1.0

    def validate(self) -> UpdatePolicy:
        if self.kind not in POLICY_KINDS:
            raise ConfigError(
                f"unknown update type {self.kind!r} (valid: {', '.join(POLICY_KINDS)})"
            )
        if self.kind == "ia3" and self.path is None and self.data is None:
            raise ConfigError("--update-type ia3 needs --update-path (a PEFT IA3 adapter)")
        if self.data is not None and (self.kind not in ("low-rank", "ia3", "sparse") or self.path):
            raise ConfigError(
                "--update-data goes with --update-type low-rank, ia3 or sparse, without "
                "--update-path"
            )
        if self.path is not None and self.kind not in ("low-rank", "ia3", "sparse"):
            raise ConfigError("--update-path goes with --update-type low-rank, ia3 or sparse")
        if self.rank is not None and self.rank < 1:
            raise ConfigError("--rank must be at least 1")
        if self.max_chain is not None and self.max_chain < 1:
            raise ConfigError("theta.maxUpdateChain must be at least 1")
        return self


@dataclass
class CleanReport:
    """What one clean did, for `git theta add` to print and act on.

    Attributes:
        stored: how changed parameters were stored, by kind ("dense", "sparse", ...).
        notes: lines for the user (lossy SVD errors, compactions).
        materialize: parameters whose stored version differs from the file beyond rounding
            (the file held the base, or a lossy update): the file must be rewritten.
        lossy: those of `materialize` whose stored version loses part of the file's change
            (a truncated SVD): rewriting the file with them needs the user's consent.
    """

    stored: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    materialize: list[str] = field(default_factory=list)
    lossy: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str) -> None:
        with self._lock:  # tensors are encoded on worker threads
            self.stored[kind] += 1


def merged_hash(entry: ParamEntry) -> str | None:
    """The content hash of the merge `entry`'s last update was added with, if that merge's
    bytes differ from git-theta's rebuild: those bytes are this version too."""
    if not entry.updates:
        return None
    value = entry.updates[-1].get(MERGED_KEY)
    return value if isinstance(value, str) else None


def _rebuilt_by_float_chain(dtype: str, shape: tuple[int, ...], prev: ParamEntry | None) -> bool:
    """Whether `prev` has the dtype and shape and is rebuilt with float arithmetic (a low-rank
    or IA3 update in its chain), so a tensor with other bytes may still be its rebuild."""
    return (
        prev is not None
        and bool(prev.updates)
        and (dtype, shape) == (prev.dtype, prev.shape)
        and not all(u["type"] in EXACT_TYPES for u in prev.updates)
    )


class Updater(AdapterSteps):
    """Applies a policy to the tensors of one checkpoint being cleaned."""

    def __init__(
        self, policy: UpdatePolicy, path: str, store: ObjectStore, report: CleanReport
    ) -> None:
        self.policy = policy
        self._path = path
        self.store = store
        self.report = report
        self.adapter: dict[str, AdapterUpdate] = {}
        self.masks: dict[str, RawTensor] = {}
        # Snapshots decoded to take updates against (snapshot.py), recycled tensor to tensor.
        self.buffers = BufferPool()
        if policy.data is not None:
            from git_theta.updates.side_file import read_side_file

            self.adapter = read_side_file(policy.data, policy.kind)
        elif policy.path is not None and policy.kind == "sparse":
            self.masks = read_masks(policy.path)
        elif policy.path is not None:
            from git_theta.updates.peft import read_adapter

            self.adapter = read_adapter(policy.path)
            kinds = {u.kind for u in self.adapter.values()}
            if kinds != {policy.kind}:
                found = "LoRA" if "low-rank" in kinds else "IA3"
                wanted = "low-rank" if found == "LoRA" else "ia3"
                raise ConfigError(
                    f"{policy.path}: a {found} adapter; use --update-type {wanted} "
                    f"(not {policy.kind})"
                )

    def load(self, ref: ObjectRef) -> RawTensor:
        return self.store.load_tensor(ref)

    def write(self, tensor: RawTensor) -> ObjectRef:
        return self.store.put(encode_object(tensor))

    @property
    def limit(self) -> int:
        """Updates (or, for star updates, versions) per snapshot."""
        return self.policy.max_chain or DEFAULT_MAX_CHAIN

    @property
    def active(self) -> bool:
        return self.policy.kind != "dense"

    def check_coverage(self, names: set[str]) -> None:
        """Every parameter the adapter (or mask file) updates must be in the checkpoint."""
        absent = sorted(n for n, u in self.adapter.items() if n not in names and not u.optional)
        absent += sorted(n for n in self.masks if n not in names)
        if absent:
            shown = ", ".join(absent[:5]) + (
                f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            )
            raise CheckpointError(
                f"{self._path}: the adapter {self.policy.path or self.policy.data} updates "
                "parameter(s) the "
                f"checkpoint does not have: {shown}"
            )

    def needs_whole(
        self, name: str, dtype: str, shape: tuple[int, ...], prev: ParamEntry | None
    ) -> bool:
        """Whether storing changed tensor `name` takes its bytes in one piece: anything but a
        plain dense object (an update, or a check against `prev`'s rebuild). A tensor with no
        previous version of its dtype and shape is always stored dense."""
        updatable = prev is not None and (dtype, shape) == (prev.dtype, prev.shape)
        return (
            (self.active and updatable)
            or name in self.adapter
            or _rebuilt_by_float_chain(dtype, shape, prev)
        )

    def takes_pages(
        self, name: str, dtype: str, shape: tuple[int, ...], prev: ParamEntry | None
    ) -> bool:
        """Whether changed tensor `name` is stored from its pages by `encode_pages`: a star
        update (snapshot.py) needs no joined copy of the tensor."""
        return (
            self.policy.kind in STAR_KINDS
            and prev is not None
            and name not in self.adapter
            and (dtype, shape) == (prev.dtype, prev.shape)
            and math.prod(shape) > 0
            and not _rebuilt_by_float_chain(dtype, shape, prev)
        )

    def encode_pages(
        self, name: str, after: PagedTensor, prev: ParamEntry | None, digest: str
    ) -> ParamEntry | None:
        """`encode` of a tensor in pages that `takes_pages` accepted; None (counted as
        dense) to store it dense. A delta is made in `after`'s pages, which then hold the XOR
        and must not be read as the tensor again (snapshot.py)."""
        entry = (
            None
            if prev is None
            else against_snapshot(self, name, after, digest, prev, self.policy.kind)
        )
        if entry is None:
            self.report.count("dense")
        return entry

    def same_as(self, after: RawTensor, prev: ParamEntry, digest: str | None = None) -> bool:
        """Whether `after` is the version `prev` records, bit for bit: the bytes the user added
        (another program's merge, whose hash the last record keeps as `merged`) or this
        machine's rebuild of the chain (another machine's kernels may round differently).
        An edit within rounding of the rebuild is an edit: "unchanged" means byte-equal.

        Args:
            digest: `content_hash(after.data)` if the caller has it already.
        """
        if not _rebuilt_by_float_chain(after.dtype, after.shape, prev):
            return False
        merged = merged_hash(prev)
        if merged is not None and (digest or content_hash(after.data)) == merged:
            return True
        return bytes(rebuild(prev, self.load).data) == bytes(after.data)

    def encode(
        self, name: str, after: RawTensor, prev: ParamEntry | None, digest: str | None = None
    ) -> ParamEntry | None:
        """The entry for changed tensor `after`, or None to store it dense.

        Args:
            digest: `content_hash(after.data)` if the caller has it already.
        """
        update = self.adapter.get(name)
        if update is not None and update.kind == "sparse":
            return self._from_sparse_side(name, after, prev, update)
        if update is not None:
            return self._from_adapter(name, after, prev, update)
        given = self.policy.path is not None or self.policy.data is not None
        if given and name not in self.masks or prev is None:
            return None
        if (after.dtype, after.shape) != (prev.dtype, prev.shape):
            return None
        kind = self.policy.kind
        # Sub-byte elements have no index of their own; their bytes still XOR exactly.
        if after.dtype in PACKED_BITS and kind not in ("delta", "auto"):
            return None
        if kind in STAR_KINDS:
            empty = not math.prod(after.shape)  # nothing to gain
            return None if empty else against_snapshot(self, name, after, digest, prev, kind)
        before = rebuild(prev, self.load)
        if name in self.masks:
            self._check_mask(name, before, after, self.masks[name])
        # An exact chain's rebuild hashes to the entry's hash (load_entry checks it), so a
        # delta need not hash `before` again.
        base = prev.hash if all(u["type"] in EXACT_TYPES for u in prev.updates) else None
        inferred = get_update_type(kind).infer(
            before, after, self.write, {"rank": self.policy.rank, "base": base}
        )
        if inferred is None:
            self.report.notes.append(
                f"{name}: cannot be stored as {kind} ({after.dtype}, shape {list(after.shape)}); "
                "stored dense"
            )
            return None
        entry = ParamEntry(
            prev.dtype, prev.shape, "", prev.object, (*prev.updates, dict(inferred.record))
        )
        if inferred.note:
            self.report.notes.append(f"{name}: {inferred.note}")
        if inferred.exact:
            return self._finish(name, entry, after, after, kind)
        rebuilt = get_update_type(kind).apply(before, inferred.record, self.load)
        if self.policy.rank is None and _within_rounding(after, rebuilt):
            # An inferred rank that rebuilds the file up to the dtype's rounding at the
            # tensor's scale: the file stays as the user wrote it (its hash kept as `merged`),
            # as a PEFT merge does; a checkout writes the rebuild.
            return self._finish(name, entry, rebuilt, after, kind)
        with self.report._lock:
            self.report.materialize.append(name)
            self.report.lossy.append(name)
        return self._finish(name, entry, rebuilt, rebuilt, kind)

    def _finish(
        self, name: str, entry: ParamEntry, rebuilt: RawTensor, kept: RawTensor, kind: str
    ) -> ParamEntry:
        """`rebuilt`: what the chain gives; `kept`: what the file will hold (the same, or the
        user's merge within rounding), which a compacted snapshot stores exactly."""
        limit = self.limit
        if len(entry.updates) > limit:
            self.report.count("dense (chain compacted)")
            self.report.notes.append(
                f"{name}: {len(entry.updates)} updates exceed the chain limit "
                f"{limit}; stored a dense snapshot"
            )
            return ParamEntry(entry.dtype, entry.shape, content_hash(kept.data), self.write(kept))
        self.report.count(kind)
        updates = entry.updates
        if kept is not rebuilt and bytes(kept.data) != bytes(rebuilt.data):
            # The file keeps the user's merge: its exact bytes count as this version.
            updates = (*updates[:-1], {**updates[-1], MERGED_KEY: content_hash(kept.data)})
        return ParamEntry(
            entry.dtype, entry.shape, content_hash(rebuilt.data), entry.object, updates
        )


def _within_rounding(tensor: RawTensor, rebuilt: RawTensor) -> bool:
    """Whether every element of `rebuilt` is within one unit of rounding of `tensor`'s dtype
    at the tensor's largest magnitude (eps * max |x|): the noise rounding the weights leaves
    in a change's smallest singular values, which a rank inferred from them drops."""
    import numpy as np

    from git_theta.updates import numeric

    values = numeric.to_compute(tensor).astype(np.float64)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    return numeric.max_abs_difference(tensor, rebuilt) <= numeric.eps(tensor.dtype) * scale
