"""Rebuild a parameter from its entry: the dense object, then each update of the chain in order.

Checkout never walks Git history: an entry names every object it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.errors import CorruptObjectError, MetadataError
from git_theta.metadata import ParamEntry
from git_theta.store import ObjectStore
from git_theta.tensor import BufferPool, RawTensor, content_hash
from git_theta.updates import get_update_type
from git_theta.updates.base import Loader

__all__ = ["EXACT_TYPES", "exact", "load_entry", "rebuild"]

# Update types whose result is defined bit for bit (no float computation).
EXACT_TYPES = frozenset({"dense", "sparse", "delta"})


def exact(entry: ParamEntry) -> bool:
    """Whether the rebuild involves no float computation, so it must hash to `entry.hash` on
    any machine (float chains may differ from the recorded bytes in the last bit on another
    CPU's matrix kernels; each of their objects is still verified against its oid)."""
    return all(u["type"] in EXACT_TYPES for u in entry.updates)


def _malformed(record: Mapping[str, Any], exc: Exception) -> MetadataError:
    detail = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
    return MetadataError(f"a {record.get('type')!r} update is malformed: {detail}")


def rebuild(
    entry: ParamEntry, load: Loader, base: RawTensor | None = None, base_hash: str = ""
) -> RawTensor:
    """The tensor `entry` describes; `base` is its dense object when the caller read it, and
    `base_hash` its content hash when known.

    Raises:
        MetadataError: an update record is malformed or does not fit its tensor.
    """
    tensor = base if base is not None else load(entry.object)
    for i, record in enumerate(entry.updates):
        if i == 0 and base_hash and record.get("base") == base_hash:
            # A delta's check of the tensor it applies to, done: the snapshot's hash came from
            # decoding it, so a star checkout hashes no tensor twice.
            record = {k: v for k, v in record.items() if k != "base"}
        try:
            tensor = get_update_type(record["type"]).apply(tensor, record, load)
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(record, exc) from None
    return tensor


def load_entry(
    entry: ParamEntry, store: ObjectStore, buffers: BufferPool | None = None
) -> RawTensor:
    """The verified tensor of `entry`: each object checked against its oid as it is read, the
    result against the entry's dtype and shape, and against its hash unless float updates made
    it (see `exact`).

    Raises:
        MissingObjectError, CorruptObjectError: messages name the object, not the parameter;
            callers add where it belongs.
        MetadataError: an update record does not fit the tensor it applies to.
    """
    if _one_delta(entry):
        from git_theta.updates.delta import rebuild_fused

        fused = rebuild_fused(entry, store, buffers)
        if fused is not None:
            return fused
    # Exact chains build new buffers (a delta XORs into its freshly read object): their
    # objects come from the caller's pool and the base goes back to it once applied. A float
    # chain's result may share memory with the tensor before it, so it gets fresh buffers.
    pooled = buffers if exact(entry) else None
    tensor, digest = store.load_hashed(
        entry.object, buffers=buffers if not entry.updates else pooled
    )
    in_place = _star_delta(entry, tensor, digest, store)
    if in_place is not None:
        digest = in_place
    elif entry.updates and (tensor.dtype, tensor.shape) == (entry.dtype, entry.shape):
        base = tensor
        tensor = rebuild(
            entry, lambda ref: store.load_tensor(ref, buffers=pooled), base=base, base_hash=digest
        )
        if pooled is not None and tensor.data is not base.data:
            pooled.give(base.data)
        digest = content_hash(tensor.data) if exact(entry) else ""
    if (tensor.dtype, tensor.shape) != (entry.dtype, entry.shape) or (
        exact(entry) and digest != entry.hash
    ):
        raise CorruptObjectError(
            f"object {entry.object.oid} and its updates hold other data than the metadata records"
            if entry.updates
            else f"object {entry.object.oid} holds other data than the metadata records"
        )
    return tensor


def _one_delta(entry: ParamEntry) -> bool:
    """Whether `entry` is a snapshot plus one delta (what `auto` and `delta` write)."""
    return len(entry.updates) == 1 and entry.updates[0].get("type") == "delta"


def _star_delta(
    entry: ParamEntry,
    base: RawTensor,
    base_hash: str,
    store: ObjectStore,
) -> str | None:
    """The content hash of `entry`'s tensor if it is its snapshot `base` (just decoded into a
    buffer of ours) plus one delta (what `auto` and `delta` write), applied in place
    (delta.apply_in_place); None when the entry is anything else."""
    if (
        not _one_delta(entry)
        or entry.updates[0].get("base") != base_hash
        or (base.dtype, base.shape) != (entry.dtype, entry.shape)
        or not isinstance(base.data, memoryview)
        or base.data.readonly
    ):
        return None
    from git_theta.updates.delta import apply_in_place

    try:
        return apply_in_place(base, entry.updates[0], store)
    except (KeyError, TypeError, ValueError) as exc:
        raise _malformed(entry.updates[0], exc) from None
