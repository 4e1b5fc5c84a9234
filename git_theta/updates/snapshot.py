"""Exact updates taken against a parameter's dense snapshot (star), not the version before.

`auto` and `delta` store a changed tensor as one update against the entry's dense object,
so an entry is always a snapshot plus at most one exact update: a checkout decodes two objects
whatever the number of versions since the snapshot, and an add decodes one (the snapshot, not
the previous version's chain). A fine-tune drifts away from its snapshot, so the update grows
from version to version; `auto` stores a new dense snapshot when it stops paying
(choice.smallest), and `theta.maxUpdateChain` bounds the versions per snapshot (`link`).

On the bench_delta.py training sequences the star costs a few percent of raw bytes per
version more than a chain of deltas each against the version before (docs/updates.md has
the numbers); in exchange the checkout of the end of a chain reads two objects, not k + 1.
Chains written by earlier versions still read (rebuild.py applies any chain in order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xxhash

from git_theta.formats.base import PagedTensor
from git_theta.metadata import ParamEntry
from git_theta.pages import PAGE_BYTES
from git_theta.store import encode_object, encode_paged
from git_theta.tensor import HASH_PREFIX, RawTensor, content_hash, storage_itemsize
from git_theta.updates import get_update_type

if TYPE_CHECKING:
    from git_theta.metadata import ObjectRef
    from git_theta.updates.policy import Updater

__all__ = ["LINK_KEY", "MIN_UPDATE_BYTES", "STAR_KINDS", "against_snapshot", "link_of"]

# Tensors smaller than this stay dense: an update saves at most a few KiB on them, and every
# link is one more object to transfer, verify and read on each checkout (norms, biases,
# counters: most tensors of a model by count, a sliver of its bytes). Deciding them needs no
# snapshot decode and no numpy, whose import (~80 ms) an add that changed only such tensors
# would otherwise pay now that `auto` is the default.
MIN_UPDATE_BYTES = 64 * 1024
# The policies whose updates are taken against the snapshot.
STAR_KINDS = ("auto", "delta")
# A star record's position after its snapshot (1 for the first version stored against it).
LINK_KEY = "link"


def link_of(entry: ParamEntry) -> int:
    """Versions stored since `entry`'s snapshot: its last record's `link`, else (a chain
    written before star updates, or by another policy) the chain's length."""
    if not entry.updates:
        return 0
    link = entry.updates[-1].get(LINK_KEY)
    return link if isinstance(link, int) and link > 0 else len(entry.updates)


def against_snapshot(
    updater: Updater,
    name: str,
    after: RawTensor | PagedTensor,
    digest: str | None,
    prev: ParamEntry,
    kind: str,
) -> ParamEntry | None:
    """The entry for changed tensor `after` (same dtype and shape as `prev`): `prev`'s snapshot
    plus one update (delta, or sparse under auto), a new snapshot past the chain limit, or None
    when `auto` finds dense smallest (the caller stores it dense). `after` may sit in pages:
    a delta is taken page by page, with no joined copy of it.

    Args:
        digest: `content_hash(after.data)` if the caller has it already.
    """
    if digest is None:
        digest = (
            after.data.content_hash()
            if isinstance(after, PagedTensor)
            else content_hash(after.data)
        )
    link = link_of(prev) + 1
    if kind == "auto" and link <= updater.limit and _small(after):
        return None  # dense, decided without decoding the snapshot or importing numpy
    # numpy and the update types' modules load here, on the first tensor that needs them.
    limit = updater.limit
    if link > limit:
        updater.report.count("dense (chain compacted)")
        updater.report.notes.append(
            f"{name}: {link} versions exceed the chain limit {limit}; stored a dense snapshot"
        )
        chunks = (
            encode_paged(after.dtype, after.shape, after.data, digest)
            if isinstance(after, PagedTensor)
            else encode_object(after, digest=digest)
        )
        return ParamEntry(after.dtype, after.shape, digest, updater.store.put(chunks))
    if isinstance(after, PagedTensor) and after.data.nbytes > PAGE_BYTES:
        streamed = _streamed(updater, prev.object, after, kind)
        if streamed is None:
            return None
        if streamed is not _WHOLE:
            updater.report.count(streamed["type"])
            linked = {**streamed, LINK_KEY: link}
            return ParamEntry(after.dtype, after.shape, digest, prev.object, (linked,))
    # One decode, on this worker, while the reader goes on with the next tensor. Its content
    # hash is computed as it decodes: the record's `base` costs no extra pass. Its buffer comes
    # from the updater's pool and goes back once the update is written (no page faults to fill
    # a fresh one for every changed tensor).
    base, base_hash = updater.store.load_hashed(prev.object, buffers=updater.buffers)
    try:
        record = _update(updater, base, base_hash, after, kind)
    finally:
        updater.buffers.give(base.data)
    if record is None:
        return None
    updater.report.count(record["type"])
    return ParamEntry(after.dtype, after.shape, digest, prev.object, ({**record, LINK_KEY: link},))


def _update(
    updater: Updater, base: RawTensor, base_hash: str, after: RawTensor | PagedTensor, kind: str
) -> dict[str, Any] | None:
    """The record taking `base` to `after` (the snapshot's buffer is overwritten), or None to
    store `after` dense."""
    if (base.dtype, base.shape) != (after.dtype, after.shape):
        return None  # a snapshot of another layout (written by hand): start a new one
    chosen = kind
    if kind == "auto":
        from git_theta.updates.choice import smallest

        chosen = smallest(base, after)
        if chosen == "dense":
            return None
    if chosen == "delta":
        return _delta(updater, base, base_hash, after)
    if not isinstance(after, PagedTensor):
        inferred = get_update_type(chosen).infer(base, after, updater.write, {})
        return None if inferred is None else dict(inferred.record)
    # Sparse, from pages: few elements changed, so one joined copy costs little next to it.
    whole = RawTensor(after.dtype, after.shape, after.data.join(updater.buffers))
    try:
        return _update(updater, base, base_hash, whole, chosen)
    finally:
        updater.buffers.give(whole.data)


def _delta(
    updater: Updater, base: RawTensor, base_hash: str, after: RawTensor | PagedTensor
) -> dict[str, Any]:
    from git_theta.updates.delta import delta_in_place

    # The snapshot's buffer is ours and not needed after: the XOR goes into it.
    return delta_in_place(base, base_hash, after, updater.store.put)


def _small(after: RawTensor | PagedTensor) -> bool:
    return len(after.data) < MIN_UPDATE_BYTES


# `_streamed`'s answer when the update needs both versions whole (sparse, or a snapshot it
# cannot read block by block): the caller decodes the snapshot.
_WHOLE: dict[str, Any] = {}


def _picks(count: int) -> list[int]:
    """The blocks whose first bytes make the sample: evenly spread over `count` blocks."""
    from git_theta.updates.delta import SAMPLE_SLICES

    if count <= SAMPLE_SLICES:
        return list(range(count))
    return sorted({round(i * (count - 1) / (SAMPLE_SLICES - 1)) for i in range(SAMPLE_SLICES)})


def _streamed(
    updater: Updater, snapshot: ObjectRef, after: PagedTensor, kind: str
) -> dict[str, Any] | None:
    """The delta record taking the snapshot to `after`, made block by block: a few blocks of
    the snapshot are decoded first for `auto`'s sample (from the start of blocks spread over
    the tensor), then, if delta is chosen, each block is decoded and XORed into the same page
    of `after` (which it overwrites: the caller is done with those bytes once the choice is
    made) while both are in cache, and the XOR is encoded from those pages. No buffer the
    size of the tensor; the snapshot's blocks go to pages of the reader's pool, already
    touched. None: dense is smaller. `_WHOLE`: decode the snapshot whole instead."""
    from git_theta.updates.delta import delta_paged_object, record_of, xor

    pool = after.data.pool
    taken: list[memoryview] = []
    with updater.store.blocks(snapshot) as blocks:
        layout = blocks.layout
        if (
            layout.expected is None
            or blocks.block != PAGE_BYTES
            or (layout.dtype, layout.shape) != (after.dtype, after.shape)
        ):
            return _WHOLE
        try:
            sampled: dict[int, memoryview] = {}
            for index in _picks(blocks.count) if kind == "auto" else []:
                taken.append(pool.take())
                sampled[index] = taken[-1][: blocks.size(index)]
                blocks.decode(index, sampled[index])
            if kind == "auto":
                chosen = _choose(after, sampled)
                if chosen != "delta":
                    return None if chosen == "dense" else _WHOLE
            taken.append(pool.take())
            spare = taken[-1]
            base, xored = xxhash.xxh3_128(), xxhash.xxh3_128()
            for index, page in enumerate(after.data.chunks()):
                block = sampled.get(index)
                if block is None:
                    block = spare[: len(page)]
                    blocks.decode(index, block)
                base.update(block)
                xor(page, block, out=page)
                xored.update(page)
            base_hash = HASH_PREFIX + base.hexdigest()
            blocks.verify(base_hash)
        finally:
            pool.give(taken)
    ref = updater.store.put(
        delta_paged_object(after.dtype, after.data, HASH_PREFIX + xored.hexdigest())
    )
    return record_of(base_hash, ref)


def _choose(after: PagedTensor, sampled: dict[int, memoryview]) -> str:
    """dense, sparse or delta, estimated from the first bytes of the `sampled` blocks of the
    snapshot and of the same pages of `after`."""
    from git_theta.updates.choice import delta_or_dense, estimate_sampled, sparse_looks_smallest
    from git_theta.updates.delta import SAMPLE_SLICE_BYTES, word_dtype

    pages = list(after.data.chunks())
    words = word_dtype(after.dtype)
    itemsize = storage_itemsize(after.dtype)
    ends = {i: min(SAMPLE_SLICE_BYTES, len(block)) for i, block in sampled.items()}
    before = b"".join(bytes(sampled[i][: ends[i]]) for i in sorted(sampled))
    now = b"".join(bytes(pages[i][: ends[i]]) for i in sorted(sampled))
    est = estimate_sampled(
        RawTensor(words, (len(before) // itemsize,), before),
        RawTensor(words, (len(now) // itemsize,), now),
        after.dtype,
        after.shape,
    )
    return "sparse" if sparse_looks_smallest(est) else delta_or_dense(est)
