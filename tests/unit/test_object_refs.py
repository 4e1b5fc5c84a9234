"""One validation point for object references: ObjectRef itself, its parse from JSON, every
update type's records, and the store's refusal to turn anything else into a path."""

from __future__ import annotations

import pytest

from git_theta import metadata as md
from git_theta.errors import MetadataError, StoreError
from git_theta.metadata import MAX_OBJECT_SIZE, ObjectRef
from git_theta.store import ObjectStore
from git_theta.tensor import RawTensor
from git_theta.updates import get_update_type
from git_theta.updates.base import object_ref

OID = "0123456789abcdef" * 4

BAD_OIDS = [
    OID + "\n",
    OID.upper(),
    OID[:-1],
    OID + "0",
    "/etc/passwd",
    "/dev/stdin",
    "../../" + OID[6:],
    "ab/cd/" + OID[6:],
    "",
    None,
    64,
]


@pytest.mark.parametrize("oid", BAD_OIDS)
def test_a_ref_cannot_be_made_with_anything_but_a_sha256(oid):
    with pytest.raises(ValueError, match="is not 64 lowercase hex digits"):
        ObjectRef(oid, 1)
    assert not md.is_oid(oid)


@pytest.mark.parametrize("size", [-1, True, 1.0, "3", None, MAX_OBJECT_SIZE + 1])
def test_a_ref_size_is_a_bounded_int(size):
    with pytest.raises(ValueError, match="is not a byte count"):
        ObjectRef(OID, size)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"oid": "/abs", "size": 3}, "here.oid: '/abs' is not 64 lowercase hex digits"),
        ({"oid": OID, "size": False}, "here.size: False is not a byte count"),
        (
            {"oid": OID, "size": 3, "x": 0},
            "here is not an object reference: unexpected key(s) ['x']",
        ),
        ({"oid": OID}, 'here is not an object reference: it needs "oid" and "size"'),
        ([OID, 3], "here is not an object reference ("),
        ("a" * 500, "here is not an object reference ('aaaa"),
    ],
)
def test_parse_names_where_and_field(value, message):
    with pytest.raises(MetadataError) as info:
        ObjectRef.parse(value, where="here")
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 200  # long values are cut short


def test_parse_accepts_exactly_a_reference():
    assert ObjectRef.parse({"size": 3, "oid": OID}, where="x") == ObjectRef(OID, 3)


def test_every_json_object_in_an_update_record_is_a_reference():
    record = {
        "type": "plugin",
        "z": {"oid": OID, "size": 1},
        "parts": [{"oid": OID, "size": 2}, [{"oid": OID, "size": 3}]],
        "scale": 1.0,
    }
    assert [r.size for r in md.update_refs(record)] == [2, 3, 1]
    record["parts"][1][0] = {"oid": OID, "size": 3, "path": "/etc/passwd"}
    with pytest.raises(MetadataError, match=r"^updates\[0\]\.parts\[1\]\[0\] is not an object"):
        md.update_refs(record, where="updates[0]")


@pytest.mark.parametrize("oid", BAD_OIDS)
def test_the_store_refuses_to_make_a_path_of_a_non_oid(oid, tmp_path):
    store = ObjectStore(tmp_path / "theta")
    with pytest.raises(StoreError, match="not 64 lowercase hex digits"):
        store.path(oid)


def test_the_store_path_of_an_oid_is_inside_the_store(tmp_path):
    store = ObjectStore(tmp_path / "theta")
    assert store.path(OID) == store.objects_dir / OID[:2] / OID[2:4] / OID


def _never(ref):  # a loader that must not be reached
    raise AssertionError(f"loaded {ref}")


@pytest.mark.parametrize(
    ("kind", "record", "field"),
    [
        ("dense", {"type": "dense", "object": {"oid": "/x", "size": 1}}, "object"),
        (
            "sparse",
            {"type": "sparse", "indices": {"oid": OID, "size": 1, "x": 0}, "values": {}},
            "indices",
        ),
        (
            "low-rank",
            {"type": "low-rank", "a": {"oid": "/dev/stdin", "size": 1}, "b": {}, "scale": 1.0},
            "a",
        ),
        ("ia3", {"type": "ia3", "axis": 0, "vector": {"oid": OID + "\n", "size": 1}}, "vector"),
    ],
)
def test_update_types_get_their_objects_only_through_the_check(kind, record, field):
    before = RawTensor("F32", (2, 2), bytes(16))
    with pytest.raises(MetadataError, match=f"^{kind} update field {field}"):
        get_update_type(kind).apply(before, record, _never)


def test_object_ref_helper_needs_the_key():
    with pytest.raises(KeyError):
        object_ref({"type": "x"}, "vector")
