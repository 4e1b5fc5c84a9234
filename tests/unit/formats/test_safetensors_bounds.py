"""Hostile safetensors headers: one CheckpointError line each, never a crash."""

from __future__ import annotations

import io
import json
import struct

import pytest

from git_theta.errors import CheckpointError
from git_theta.formats.safetensors import SafetensorsFormat, parse_header
from git_theta.pages import PagePool

FMT = SafetensorsFormat()


def _file(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize("paged", [False, True], ids=["split", "paged"])
def test_a_tensor_larger_than_memory_is_one_line(paged):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}})
    stream = io.BytesIO(_file(header.encode(), bytes(64)))
    split = (
        FMT.split_paged(stream, source="m", pages=PagePool())
        if paged
        else FMT.split(stream, source="m")
    )
    with pytest.raises(CheckpointError) as info:
        list(split.tensors)
    # Whether the allocation fails or the read comes up short depends on the machine's
    # overcommit policy; either way it is one line naming the parameter.
    assert str(info.value).startswith("m: ")
    assert "parameter 'w'" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "not valid JSON: JSON nested deeper than 64 levels"),
        (b'{"w": {"dtype": "F32", "shape": [[[[1]]]], "data_offsets": [0, 4]}}', "malformed"),
        (b'{"\\udfff": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', "lone surrogate"),
        (b'{"w": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}', "malformed"),
        (
            json.dumps({"w": {"dtype": "U8", "shape": [1] * 65, "data_offsets": [0, 1]}}).encode(),
            "at most 64",
        ),
        (b"\xff\xfe", "not valid UTF-8"),
    ],
    ids=["deep", "nested-shape", "surrogate", "bool-dim", "too-many-dims", "bad-utf8"],
)
def test_hostile_headers_are_one_line(header, message):
    with pytest.raises(CheckpointError, match=message) as info:
        parse_header(header, source="m")
    assert str(info.value).startswith("m: ") and "\n" not in str(info.value)
