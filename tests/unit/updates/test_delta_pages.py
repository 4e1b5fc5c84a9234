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
    assert bytes(b"".join(tensor.data.chunks())) == bytes(after.data)  # pages left intact


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


def test_xor_planes_that_shrink_little_stay_raw():
    # A large step (r = 0.05): the XOR's middle plane shrinks by ~14%, under the 20% an XOR
    # plane must save; its high plane by ~85%. The store's default rule (3%) codes both.
    before, after = _pair(0.05)
    diff = delta_bytes(before, after)
    blob = b"".join(bytes(c) for c in delta_object(diff))
    assert read_header(blob)["zplanes"] == [3]
    assert read_header(b"".join(bytes(c) for c in encode_object(diff)))["zplanes"] == [2, 3]
    # A small step leaves a middle plane worth coding.
    small = delta_bytes(*_pair(1e-3))
    assert read_header(b"".join(bytes(c) for c in delta_object(small)))["zplanes"] == [2, 3]


@pytest.mark.parametrize(("dtype", "blocks"), [("U8", 3), ("U16", 4), ("F32", 5), ("U64", 2)])
def test_blocks_encoded_on_two_threads_are_the_same_bytes(dtype: str, blocks: int):
    itemsize = {"U8": 1, "U16": 2, "F32": 4, "U64": 8}[dtype]
    rng = np.random.default_rng(blocks)
    nbytes = blocks * PAGE_BYTES - 3 * itemsize
    if dtype == "F32":
        data = rng.normal(0, 0.02, nbytes // 4).astype("<f4").tobytes()
    else:
        data = (rng.integers(0, 4, nbytes, dtype=np.uint8) * (rng.random(nbytes) < 0.1)).tobytes()
    tensor = RawTensor(dtype, (nbytes // itemsize,), data)
    with ThreadPoolExecutor(max_workers=1) as helper:
        # Each chunk copied as it arrives, as the store hashes and writes it: chunks are
        # views of a thread's scratch that its next block overwrites.
        two = b"".join(bytes(c) for c in encode_object(tensor, helper=helper))
    assert two == b"".join(bytes(c) for c in encode_object(tensor))
    assert read_header(two)["codec"] == "planes"


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
