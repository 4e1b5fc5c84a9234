"""Entries with update chains in the metadata file: canonical bytes, round trip, the objects
they need, and what the parser refuses."""

from __future__ import annotations

import pytest

from git_theta import metadata as md
from git_theta.errors import MetadataError
from git_theta.metadata import Metadata, ObjectRef, ParamEntry


def _ref(char: str, size: int) -> ObjectRef:
    return ObjectRef(char * 64, size)


HASH = "xxh3_128:" + "3" * 32
LOW_RANK = {
    "type": "low-rank",
    "a": _ref("b", 60).to_json(),
    "b": _ref("c", 70).to_json(),
    "scale": 2.0,
    "tolerance": 1.0,
    "transpose": False,
}
IA3 = {"type": "ia3", "axis": 1, "tolerance": 1.0, "vector": _ref("d", 30).to_json()}
SPARSE = {
    "type": "sparse",
    "count": 2,
    "indices": _ref("e", 40).to_json(),
    "values": _ref("f", 41).to_json(),
}
DENSE = {"type": "dense", "object": _ref("a", 100).to_json()}

GOLDEN = (
    b"{\n"
    b'  "git_theta": 1,\n'
    b'  "format": "safetensors",\n'
    b'  "layout": null,\n'
    b'  "params": {\n'
    b'    "w": {"dtype": "F32", "hash": "xxh3_128:33333333333333333333333333333333", '
    b'"object": {"oid": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", '
    b'"size": 100}, "shape": [4, 3], "updates": ['
    b'{"a": {"oid": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "size": 60}, '
    b'"b": {"oid": "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", "size": 70}, '
    b'"scale": 2.0, "tolerance": 1.0, "transpose": false, "type": "low-rank"}, '
    b'{"axis": 1, "tolerance": 1.0, "type": "ia3", '
    b'"vector": {"oid": "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd", "size": 30}}, '
    b'{"count": 2, '
    b'"indices": {"oid": "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "size": 40}, '
    b'"type": "sparse", '
    b'"values": {"oid": "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "size": 41}}'
    b"]}\n"
    b"  }\n"
    b"}\n"
)


def _entry(*updates) -> ParamEntry:
    return ParamEntry("F32", (4, 3), HASH, _ref("a", 100), tuple(updates))


def sample() -> Metadata:
    return Metadata("safetensors", None, {"w": _entry(LOW_RANK, IA3, SPARSE)})


def test_golden_bytes_with_an_update_chain():
    assert md.encode(sample()) == GOLDEN


def test_record_key_order_does_not_change_the_bytes():
    shuffled = {k: LOW_RANK[k] for k in reversed(list(LOW_RANK))}
    meta = Metadata("safetensors", None, {"w": _entry(shuffled, IA3, SPARSE)})
    assert md.encode(meta) == GOLDEN


def test_round_trip():
    decoded = md.decode(GOLDEN)
    assert decoded == sample()
    assert decoded.params["w"].updates == (LOW_RANK, IA3, SPARSE)
    assert decoded.params["w"].update_type == "sparse"
    assert md.encode(decoded) == GOLDEN


def test_an_entry_without_updates_has_no_updates_key():
    assert "updates" not in _entry().to_json()
    assert _entry().update_type == "dense"


def test_entry_objects_list_the_base_then_each_updates_objects_in_key_order():
    assert _entry(LOW_RANK, IA3, SPARSE, DENSE).objects() == [
        _ref("a", 100),
        _ref("b", 60),
        _ref("c", 70),
        _ref("d", 30),
        _ref("e", 40),
        _ref("f", 41),
        _ref("a", 100),
    ]
    assert md.update_refs({"type": "ia3", "axis": 0, "tolerance": 1.0}) == []


def test_metadata_objects_are_listed_once():
    other = ParamEntry("F16", (3,), HASH, _ref("d", 30), (SPARSE,))
    meta = Metadata("safetensors", None, {"w": _entry(LOW_RANK, IA3, SPARSE), "v": other})
    assert meta.objects() == [
        _ref("a", 100),
        _ref("b", 60),
        _ref("c", 70),
        _ref("d", 30),
        _ref("e", 40),
        _ref("f", 41),
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'"updates": [', b'"updates": {"x": [', "updates must be a list of typed objects"),
        (b'"type": "ia3", ', b"", r"updates\[1\] is not an object with a string type"),
        (b'"type": "sparse"', b'"type": 3', r"updates\[2\] is not an object with a string type"),
        (b'"size": 60', b'"size": -60', r"updates\[\d\]\.\w+\.size: -60 is not a byte count .*"),
        (
            b'"dddddddd',
            b'"DDDDDDDD',
            r"updates\[1\]\.vector\.oid: 'DDDDDDDD\w+' is not 64 lowercase hex digits",
        ),
    ],
)
def test_malformed_updates_are_refused(old, new, message):
    data = GOLDEN.replace(old, new, 1)
    if new.endswith(b"["):
        data = data.replace(b"]}\n  }", b"]}}\n  }")
    assert data != GOLDEN
    with pytest.raises(
        MetadataError, match=f"^m: malformed git-theta metadata: parameter 'w': {message}$"
    ):
        md.decode(data, source="m")
