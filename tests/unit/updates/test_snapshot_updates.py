"""Updates against the snapshot (git_theta/updates/snapshot.py): every version one update
against the entry's dense object, read through the store with a buffer pool, and chains of
deltas written by earlier versions still read and continue as a star."""

from __future__ import annotations

import numpy as np

from git_theta.metadata import ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import BufferPool, RawTensor, content_hash
from git_theta.updates import get_update_type
from git_theta.updates.policy import CleanReport, UpdatePolicy, Updater
from git_theta.updates.rebuild import load_entry
from git_theta.updates.snapshot import link_of

N = 200_000


def _versions(count: int, seed: int = 0) -> list[RawTensor]:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.02, N).astype("<f4")
    out = [RawTensor("F32", (N,), w.tobytes())]
    for _ in range(count - 1):
        w = (w + rng.normal(0, 2e-5, N)).astype("<f4")
        out.append(RawTensor("F32", (N,), w.tobytes()))
    return out


def _dense(store: ObjectStore, tensor: RawTensor) -> ParamEntry:
    return ParamEntry(
        tensor.dtype, tensor.shape, content_hash(tensor.data), store.put(encode_object(tensor))
    )


def _add(updater: Updater, tensor: RawTensor, prev: ParamEntry) -> ParamEntry:
    digest = content_hash(tensor.data)
    entry = updater.encode("w", tensor, prev, digest)
    return entry if entry is not None else _dense(updater.store, tensor)


def test_every_version_is_one_delta_against_the_snapshot(store: ObjectStore):
    versions = _versions(5)
    updater = Updater(UpdatePolicy(kind="delta"), "m", store, CleanReport())
    first = _dense(store, versions[0])
    entry, pool = first, BufferPool()
    for i, version in enumerate(versions[1:], start=1):
        entry = _add(updater, version, entry)
        assert entry.object == first.object and link_of(entry) == i
        (record,) = entry.updates
        assert record["type"] == "delta" and record["base"] == first.hash
        # Read twice through one pool: a recycled buffer must not corrupt the next read.
        for _ in range(2):
            got = load_entry(entry, store, pool)
            assert bytes(got.data) == bytes(version.data)
            pool.give(got.data)
    assert updater.report.stored["delta"] == 4


def test_the_chain_limit_counts_versions_since_the_snapshot(store: ObjectStore):
    versions = _versions(4)
    updater = Updater(UpdatePolicy(kind="delta", max_chain=2), "m", store, CleanReport())
    entry = _dense(store, versions[0])
    entries = []
    for version in versions[1:]:
        entry = _add(updater, version, entry)
        entries.append(entry)
    assert [link_of(e) for e in entries] == [1, 2, 0]
    assert entries[2].object != entries[0].object and not entries[2].updates
    assert bytes(load_entry(entries[2], store).data) == bytes(versions[3].data)
    assert updater.report.stored["dense (chain compacted)"] == 1
    assert any("chain limit 2" in note for note in updater.report.notes)


def test_auto_takes_sparse_against_the_snapshot_for_a_few_changed_entries(store: ObjectStore):
    (v1,) = _versions(1)
    v2 = bytearray(v1.data)
    v2[400:404] = b"\x00\x00\x80\x3f"
    v3 = bytearray(v2)
    v3[800:804] = b"\x00\x00\x00\x40"
    updater = Updater(UpdatePolicy(kind="auto"), "m", store, CleanReport())
    entry = _dense(store, v1)
    for data in (v2, v3):
        entry = _add(updater, RawTensor("F32", (N,), bytes(data)), entry)
        (record,) = entry.updates
        assert record["type"] == "sparse"
        assert bytes(load_entry(entry, store).data) == bytes(data)
    assert entry.updates[0]["count"] == 2  # both changes, against the snapshot


def test_a_chain_written_before_the_star_reads_and_continues_against_its_snapshot(
    store: ObjectStore,
):
    versions = _versions(5, seed=3)
    write = lambda t: store.put(encode_object(t))  # noqa: E731
    first = _dense(store, versions[0])
    # As earlier versions wrote it: each delta against the version before, no `link`.
    chain = first
    for before, after in zip(versions, versions[1:4], strict=False):
        record = get_update_type("delta").infer(before, after, write, {}).record
        chain = ParamEntry(
            "F32", (N,), content_hash(after.data), first.object, (*chain.updates, record)
        )
    assert len(chain.updates) == 3 and link_of(chain) == 3
    assert bytes(load_entry(chain, store, BufferPool()).data) == bytes(versions[3].data)

    updater = Updater(UpdatePolicy(kind="delta"), "m", store, CleanReport())
    entry = _add(updater, versions[4], chain)
    assert entry.object == first.object and len(entry.updates) == 1 and link_of(entry) == 4
    assert bytes(load_entry(entry, store).data) == bytes(versions[4].data)
