"""Packs (git_theta/store/pack.py): small tensors' objects stored as one object, each member
referenced by offset and length, read alone and verified by its own content hash; fsck checks
every member the metadata uses."""

from __future__ import annotations

import os

import numpy as np
import pytest

from git_theta import metadata as md
from git_theta.errors import CorruptObjectError, MetadataError
from git_theta.metadata import ObjectRef, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.store.pack import MIN_MEMBERS, PackBuilder
from git_theta.store.verify import check_object
from git_theta.tensor import RawTensor, content_hash

OID = "0123456789abcdef" * 4


def _tensors(n: int, seed: int = 0) -> list[RawTensor]:
    rng = np.random.default_rng(seed)
    return [
        RawTensor(
            "F32",
            (300,),
            memoryview(bytearray((rng.standard_normal(300) * 0.02).astype("<f4").tobytes())),
        )
        for _ in range(n)
    ]


def _packed(store: ObjectStore, tensors: list[RawTensor]) -> list[ObjectRef]:
    builder = PackBuilder()
    for t in tensors:
        builder.add(encode_object(t, zplanes=builder.zplanes(t.dtype)), t.dtype)
    return builder.store(store)


def test_members_of_a_pack_read_back_alone(tmp_path):
    store = ObjectStore(tmp_path)
    tensors = _tensors(MIN_MEMBERS + 4)
    refs = _packed(store, tensors)
    assert len({r.oid for r in refs}) == 1  # one object ...
    assert len(list((tmp_path / "objects").rglob("*/*/*"))) == 1  # ... one file
    assert [r.offset for r in refs] == sorted(r.offset for r in refs)
    for ref, tensor in zip(refs, tensors, strict=True):
        assert bytes(store.load_tensor(ref).data) == bytes(tensor.data)
        assert store.has(ref.whole)


def test_a_small_batch_is_stored_as_the_objects_each_tensor_makes_alone(tmp_path):
    store = ObjectStore(tmp_path)
    tensors = _tensors(MIN_MEMBERS - 1)
    refs = _packed(store, tensors)
    assert all(r.offset is None for r in refs)
    for ref, tensor in zip(refs, tensors, strict=True):
        assert store.get(ref) == b"".join(bytes(c) for c in encode_object(tensor))


def test_a_changed_byte_in_a_member_fails_its_read_and_fsck(tmp_path):
    store = ObjectStore(tmp_path)
    tensors = _tensors(MIN_MEMBERS)
    refs = _packed(store, tensors)
    members = {
        (r.offset, r.length): content_hash(t.data) for r, t in zip(refs, tensors, strict=True)
    }
    assert check_object(store, refs[0].whole, members=members) is None
    assert check_object(store, refs[0].whole, members=members, decode=True) is None
    path = store.path(refs[3].oid)
    blob = bytearray(path.read_bytes())
    blob[refs[3].offset + refs[3].length - 1] ^= 0xFF  # the member's last payload byte
    os.chmod(path, 0o644)
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptObjectError, match=refs[3].oid):
        store.load_tensor(refs[3])
    assert bytes(store.load_tensor(refs[2]).data) == bytes(tensors[2].data)
    assert "do not hash to its oid" in check_object(store, refs[0].whole, members=members)


def test_fsck_finds_a_member_that_holds_other_data_or_is_not_there(tmp_path):
    store = ObjectStore(tmp_path)
    tensors = _tensors(MIN_MEMBERS)
    refs = _packed(store, tensors)
    first = (refs[0].offset, refs[0].length)
    other = content_hash(tensors[1].data)
    why = check_object(store, refs[0].whole, members={first: other})
    assert (
        why
        == f"corrupt (its member at offset {first[0]} holds other data than the metadata records)"
    )
    why = check_object(store, refs[0].whole, members={(first[0] + 1, first[1] - 1): None})
    assert why == f"corrupt (the metadata names a member at offset {first[0] + 1} it does not have)"
    # a pack where the metadata records one tensor's dense object
    assert "is a pack" in check_object(store, refs[0].whole, content_hash=other)


def test_member_references_are_checked_at_the_one_validation_point():
    ref = ObjectRef.parse({"oid": OID, "size": 100, "offset": 10, "length": 90}, where="object")
    assert (ref.offset, ref.length, ref.stored, ref.whole) == (10, 90, 90, ObjectRef(OID, 100))
    assert ObjectRef.parse(ref.to_json(), where="object") == ref
    bad = [
        ({"offset": -1, "length": 1}, "object.offset: -1 is not a byte offset"),
        ({"offset": True, "length": 1}, "object.offset: True is not a byte offset"),
        ({"offset": 0, "length": 0}, "object.length: 0 does not fit"),
        ({"offset": 50, "length": 51}, "object.length: 51 does not fit"),
        ({"offset": 0, "length": "9"}, "object.length: '9' does not fit"),
        ({"offset": 0}, 'it needs "oid" and "size" (and "offset" with "length" for a member)'),
        ({"offset": 0, "length": 1, "x": 2}, "unexpected key(s) ['x']"),
    ]
    for extra, message in bad:
        with pytest.raises(MetadataError) as info:
            ObjectRef.parse({"oid": OID, "size": 100, **extra}, where="object")
        assert message in str(info.value)
    with pytest.raises(ValueError, match="does not fit"):
        ObjectRef(OID, 100, 99, 2)


@pytest.mark.parametrize("shape", [(), (3,), (2, 5, 7)])
@pytest.mark.parametrize("member", [None, (7, 40)])
def test_dense_entries_are_written_as_the_json_encoder_writes_them(shape, member):
    ref = ObjectRef(OID, 100, *member) if member else ObjectRef(OID, 100)
    entry = ParamEntry("BF16", shape, "xxh3_128:" + "ab" * 16, ref)
    meta = md.Metadata("safetensors", entry, {"w": entry})
    assert md._entry_text(entry) == md._dumps(entry.to_json())
    assert md.decode(md.encode(meta)) == meta
