"""Star updates taken from a tensor in pages (the clean filter's reader hands large tensors
over that way): the same entries and objects as from one buffer, with no joined copy; XOR
planes that shrink little stay raw; a large object's blocks encoded on two threads come out
byte for byte as on one."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from git_theta.formats.base import PagedTensor
from git_theta.metadata import ParamEntry
from git_theta.pages import PAGE_BYTES, PagePool, read_pages
from git_theta.store import ObjectStore, decode_object, encode_object
from git_theta.store.serialize import read_header
from git_theta.tensor import RawTensor, content_hash
from git_theta.updates.delta import delta_bytes, delta_object
from git_theta.updates.policy import CleanReport, UpdatePolicy, Updater
from git_theta.updates.rebuild import load_entry

# Three whole pages and part of a fourth: the XOR crosses page boundaries and the last
# page is short.
N = (3 * PAGE_BYTES + 12_344) // 4


def _pair(r: float, seed: int = 0) -> tuple[RawTensor, RawTensor]:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.02, N).astype("<f4")
    moved = (w + rng.normal(0, r * 0.02, N)).astype("<f4")  # noise of relative size r
    return RawTensor("F32", (N,), w.tobytes()), RawTensor("F32", (N,), moved.tobytes())


def _paged(tensor: RawTensor) -> PagedTensor:
    data = read_pages(io.BytesIO(tensor.data), len(tensor.data), PagePool(), source="m", what="w")
    return PagedTensor(tensor.dtype, tensor.shape, data)


def _dense(store: ObjectStore, tensor: RawTensor) -> ParamEntry:
    digest = content_hash(tensor.data)
    return ParamEntry(tensor.dtype, tensor.shape, digest, store.put(encode_object(tensor)))


@pytest.mark.parametrize(
    ("kind", "changes", "stored"),
    [("delta", "all", "delta"), ("auto", "all", "delta"), ("auto", "few", "sparse")],
)
def test_a_tensor_in_pages_is_stored_as_from_one_buffer(
    store: ObjectStore, kind: str, changes: str, stored: str
):
    before, after = _pair(1e-3)
    if changes == "few":
        data = bytearray(before.data)
        data[3 * PAGE_BYTES - 2 : 3 * PAGE_BYTES + 2] = b"\x00\x00\x80\x3f"  # across pages
        after = RawTensor("F32", (N,), bytes(data))
    prev = _dense(store, before)
    digest = content_hash(after.data)
    whole = Updater(UpdatePolicy(kind=kind), "m", store, CleanReport())
    paged = Updater(UpdatePolicy(kind=kind), "m", store, CleanReport())
    tensor = _paged(after)
    assert paged.takes_pages("w", "F32", (N,), prev)
    from_pages = paged.encode_pages("w", tensor, prev, digest)
    assert from_pages is not None
    assert from_pages == whole.encode("w", after, prev, digest)
    assert [u["type"] for u in from_pages.updates] == [stored]
    assert paged.report.stored == {stored: 1}
    assert bytes(load_entry(from_pages, store).data) == bytes(after.data)
    # A delta is XORed into the pages (the caller releases them after); sparse needs both
    # versions whole and leaves them intact.
    left = bytes(b"".join(tensor.data.chunks()))
    assert left == (bytes(delta_bytes(before, after).data) if stored == "delta" else after.data)


def test_a_tensor_in_pages_past_the_chain_limit_is_a_dense_snapshot(store: ObjectStore):
    before, after = _pair(1e-3)
    updater = Updater(UpdatePolicy(kind="delta", max_chain=1), "m", store, CleanReport())
    first = updater.encode_pages(
        "w", _paged(after), _dense(store, before), content_hash(after.data)
    )
    assert first is not None and first.updates
    again = updater.encode_pages("w", _paged(before), first, content_hash(before.data))
    assert again == _dense(store, before)
    assert updater.report.stored["dense (chain compacted)"] == 1


def test_auto_from_pages_stores_unrelated_versions_dense(store: ObjectStore):
    before, _ = _pair(1e-3)
    _, unrelated = _pair(1e-3, seed=1)
    updater = Updater(UpdatePolicy(kind="auto"), "m", store, CleanReport())
    entry = updater.encode_pages(
        "w", _paged(unrelated), _dense(store, before), content_hash(unrelated.data)
    )
    assert entry is None and updater.report.stored == {"dense": 1}


def test_only_star_policies_take_pages(store: ObjectStore):
    before, _ = _pair(1e-3)
    prev = _dense(store, before)
    for kind, takes in (("delta", True), ("auto", True), ("sparse", False), ("dense", False)):
        updater = Updater(UpdatePolicy(kind=kind), "m", store, CleanReport())
        assert updater.takes_pages("w", "F32", (N,), prev) is takes, kind
        assert not updater.takes_pages("w", "F32", (N,), None)
        assert not updater.takes_pages("w", "F16", (N,), prev)


def _coded(blob: bytes) -> list[int]:
    header = read_header(blob)
    return sorted(header.get("zplanes", []) + header.get("mplanes", []))


def test_xor_planes_that_shrink_little_stay_raw():
    # A large step (r = 0.05): the XOR's middle plane shrinks by ~14%, under the 20% an XOR
    # plane must save; its high plane by ~85%. The store's default rule (3%) codes both.
    before, after = _pair(0.05)
    diff = delta_bytes(before, after)
    blob = b"".join(bytes(c) for c in delta_object(diff))
    assert _coded(blob) == [3]
    assert read_header(b"".join(bytes(c) for c in encode_object(diff)))["zplanes"] == [2, 3]
    # A small step leaves a middle plane worth coding.
    small = delta_bytes(*_pair(1e-3))
    assert _coded(b"".join(bytes(c) for c in delta_object(small))) == [2, 3]


@pytest.mark.parametrize("r", [0.05, 1e-2, 1e-3, 1e-4])
def test_mostly_zero_xor_planes_are_masked_and_the_object_shrinks(r: float):
    # The high planes of an XOR are mostly zero: masked (a bitmap and the nonzero bytes) they
    # store smaller than as one zstd frame, and decode to the same XOR.
    from git_theta.store.serialize import choose_planes

    diff = delta_bytes(*_pair(r))
    blob = b"".join(bytes(c) for c in delta_object(diff))
    header = read_header(blob)
    assert header["v"] == 2 and header["mplanes"]
    assert not set(header["mplanes"]) & set(header["zplanes"])
    zstd_only = encode_object(diff, zplanes=choose_planes(memoryview(diff.data), 4, min_saving=0.2))
    assert len(blob) < sum(len(c) for c in zstd_only)
    assert bytes(decode_object(blob).data) == bytes(diff.data)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(("dtype", "blocks"), [("U8", 3), ("U16", 4), ("F32", 5), ("U64", 2)])
def test_blocks_encoded_on_two_threads_are_the_same_bytes(dtype: str, blocks: int, masked: bool):
    itemsize = {"U8": 1, "U16": 2, "F32": 4, "U64": 8}[dtype]
    rng = np.random.default_rng(blocks)
    nbytes = blocks * PAGE_BYTES - 3 * itemsize
    if dtype == "F32":
        data = rng.normal(0, 0.02, nbytes // 4).astype("<f4").tobytes()
    else:
        data = (rng.integers(0, 4, nbytes, dtype=np.uint8) * (rng.random(nbytes) < 0.1)).tobytes()
    tensor = RawTensor(dtype, (nbytes // itemsize,), data)
    mplanes = list(range(0, itemsize, 2)) if masked else None
    with ThreadPoolExecutor(max_workers=1) as helper:
        # Each chunk copied as it arrives, as the store hashes and writes it: chunks are
        # views of a thread's scratch that its next block overwrites.
        two = b"".join(bytes(c) for c in encode_object(tensor, helper=helper, mplanes=mplanes))
    assert two == b"".join(bytes(c) for c in encode_object(tensor, mplanes=mplanes))
    assert read_header(two)["codec"] == "planes"
    assert read_header(two).get("mplanes") == (mplanes if itemsize > 1 else None)
    assert bytes(decode_object(two).data) == data


def test_delta_objects_encoded_by_concurrent_workers_decode_to_their_xor():
    # The clean's workers encode large deltas at the same time; each block a helper thread
    # encodes must stay intact until its own caller has taken it.
    diffs = [delta_bytes(*_pair(1e-2, seed=s)) for s in range(4)]

    def encode(diff: RawTensor) -> bytes:
        return b"".join(bytes(c) for c in delta_object(diff))

    with ThreadPoolExecutor(max_workers=4) as workers:
        for _ in range(3):
            blobs = list(workers.map(encode, diffs))
            for diff, blob in zip(diffs, blobs, strict=True):
                assert bytes(decode_object(blob).data) == bytes(diff.data)


def _entry_of(store: ObjectStore, blob: bytes, tensor: RawTensor) -> ParamEntry:
    return ParamEntry(tensor.dtype, tensor.shape, content_hash(tensor.data), store.put([blob]))


@pytest.mark.parametrize("kind", ["delta", "auto"])
def test_a_snapshot_changed_in_the_store_fails_the_add(store: ObjectStore, kind: str):
    # Taken block by block, the snapshot is checked against its header's hash once every
    # block went by: a changed raw byte (which decodes) is corruption, not a wrong delta.
    from git_theta.errors import CorruptObjectError

    before, after = _pair(1e-3)
    prev = _dense(store, before)
    path = store.locate(prev.object.oid)
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0x01  # in the last block's raw low plane
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    updater = Updater(UpdatePolicy(kind=kind), "m", store, CleanReport())
    with pytest.raises(CorruptObjectError, match=prev.object.oid):
        updater.encode_pages("w", _paged(after), prev, content_hash(after.data))


def test_a_snapshot_without_a_content_hash_is_decoded_whole(store: ObjectStore):
    # Objects written before headers carried the hash: the update is still right, taken
    # against the snapshot decoded whole (checked by its oid).
    import msgpack

    before, after = _pair(1e-3)
    blob = b"".join(bytes(c) for c in encode_object(before))
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(blob)
    header = unpacker.unpack()
    del header["hash"]
    prev = _entry_of(store, msgpack.packb(header) + blob[unpacker.tell() :], before)
    updater = Updater(UpdatePolicy(kind="delta"), "m", store, CleanReport())
    entry = updater.encode_pages("w", _paged(after), prev, content_hash(after.data))
    assert entry is not None and [u["type"] for u in entry.updates] == ["delta"]
    assert bytes(load_entry(entry, store).data) == bytes(after.data)


def _star_entry(store: ObjectStore, r: float = 1e-3) -> tuple[ParamEntry, RawTensor]:
    before, after = _pair(r)
    updater = Updater(UpdatePolicy(kind="delta"), "m", store, CleanReport())
    entry = updater.encode_pages(
        "w", _paged(after), _dense(store, before), content_hash(after.data)
    )
    assert entry is not None and [u["type"] for u in entry.updates] == ["delta"]
    return entry, after


@pytest.mark.parametrize("r", [0.05, 1e-4])
def test_a_star_delta_is_rebuilt_in_the_plane_domain_bit_for_bit(store: ObjectStore, r: float):
    from git_theta.tensor import BufferPool
    from git_theta.updates.delta import rebuild_fused

    entry, after = _star_entry(store, r)
    fused = rebuild_fused(entry, store, BufferPool())
    assert fused is not None and bytes(fused.data) == bytes(after.data)
    assert bytes(load_entry(entry, store, BufferPool()).data) == bytes(after.data)


def test_a_changed_xor_object_is_named_not_rebuilt(store: ObjectStore):
    # The fused rebuild checks only the result; when it fails, the object-by-object path runs
    # and names the object whose bytes changed.
    from git_theta.errors import CorruptObjectError
    from git_theta.updates.delta import rebuild_fused

    entry, _ = _star_entry(store)
    oid = entry.updates[0]["object"]["oid"]
    path = store.locate(oid)
    data = bytearray(path.read_bytes())
    data[-3000] ^= 0x01  # a raw low plane of the last block: it decodes, to other bytes
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    assert rebuild_fused(entry, store) is None
    with pytest.raises(CorruptObjectError, match=oid):
        load_entry(entry, store)
