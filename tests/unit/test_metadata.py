from __future__ import annotations

import pytest

from git_theta import metadata as md
from git_theta.errors import MetadataError, NotMetadataError
from git_theta.metadata import Metadata, ObjectRef, ParamEntry

OID_A = "a" * 64
OID_B = "b" * 64
HASH_A = "xxh3_128:" + "1" * 32
HASH_B = "xxh3_128:" + "2" * 32

GOLDEN = (
    b"{\n"
    b'  "git_theta": 1,\n'
    b'  "format": "safetensors",\n'
    b'  "layout": {"dtype": "U8", "hash": "xxh3_128:11111111111111111111111111111111", '
    b'"object": {"oid": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", '
    b'"size": 40}, "shape": [24]},\n'
    b'  "params": {\n'
    b'    "bias": {"dtype": "F16", "hash": "xxh3_128:22222222222222222222222222222222", '
    b'"object": {"oid": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", '
    b'"size": 30}, "shape": [3]},\n'
    b'    "w\xc3\xa9ight": {"dtype": "F32", "hash": "xxh3_128:11111111111111111111111111111111", '
    b'"object": {"oid": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", '
    b'"size": 40}, "shape": [2, 3]}\n'
    b"  }\n"
    b"}\n"
)


def sample(order=("wéight", "bias")) -> Metadata:
    entries = {
        "wéight": ParamEntry("F32", (2, 3), HASH_A, ObjectRef(OID_A, 40)),
        "bias": ParamEntry("F16", (3,), HASH_B, ObjectRef(OID_B, 30)),
    }
    return Metadata(
        format="safetensors",
        layout=ParamEntry("U8", (24,), HASH_A, ObjectRef(OID_A, 40)),
        params={name: entries[name] for name in order},
    )


def test_golden_bytes():
    assert md.encode(sample()) == GOLDEN


def test_encoding_ignores_insertion_order():
    assert md.encode(sample(("bias", "wéight"))) == md.encode(sample())


def test_decode_round_trip():
    assert md.decode(GOLDEN) == sample()
    assert md.encode(md.decode(GOLDEN)) == GOLDEN


def test_empty_params_and_no_layout():
    meta = Metadata(format="npz", layout=None, params={})
    data = md.encode(meta)
    assert (
        data == b'{\n  "git_theta": 1,\n  "format": "npz",\n  "layout": null,\n  "params": {}\n}\n'
    )
    assert md.decode(data) == meta


def test_objects_are_listed_once():
    assert md.decode(GOLDEN).objects() == [ObjectRef(OID_A, 40), ObjectRef(OID_B, 30)]


def test_not_metadata():
    with pytest.raises(NotMetadataError, match="^x: not git-theta metadata$"):
        md.decode(b'{"git_theta": 1}', source="x")
    assert not md.looks_like_metadata(b"\x10\x00\x00\x00\x00\x00\x00\x00{")


def test_future_version_is_refused_with_advice():
    with pytest.raises(MetadataError, match="metadata version 2 is not supported.*upgrade"):
        md.decode(GOLDEN.replace(b'"git_theta": 1', b'"git_theta": 2'), source="m")


@pytest.mark.parametrize(
    "old, new, message",
    [
        (b'"dtype": "F16"', b'"dtype": "F17"', "unknown dtype 'F17'"),
        (b'"shape": [3]', b'"shape": [-3]', "shape must be"),
        (b'"size": 30', b'"size": "30"', "object.size: '30' is not a byte count"),
        (b"}\n}\n", b"}\n", "malformed git-theta metadata"),
    ],
)
def test_malformed(old, new, message):
    with pytest.raises(MetadataError, match=message):
        md.decode(GOLDEN.replace(old, new), source="m")
