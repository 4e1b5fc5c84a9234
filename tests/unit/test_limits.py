from __future__ import annotations

import json
import sys
import time

import pytest

from git_theta.limits import (
    MAX_JSON_DEPTH,
    MAX_NDIM,
    MAX_TENSOR_BYTES,
    check_json_depth,
    checked_nbytes,
    has_lone_surrogate_escape,
    parse_size,
)


@pytest.mark.parametrize(
    ("dtype", "shape", "nbytes"),
    [
        ("F32", [2, 3], 24),
        ("F32", (), 4),
        ("BF16", [0, 1 << 60], 0),
        ("F4", [3, 2], 3),
        ("BOOL", [7], 7),
        ("U8", [MAX_TENSOR_BYTES], MAX_TENSOR_BYTES),
    ],
)
def test_checked_nbytes(dtype, shape, nbytes):
    assert checked_nbytes(dtype, shape) == nbytes


@pytest.mark.parametrize(
    ("dtype", "shape", "message"),
    [
        ("F32", [-1], "non-negative integers"),
        ("F32", [True], "non-negative integers"),
        ("F32", [2.0], "non-negative integers"),
        ("F32", "23", "must be a list"),
        ("F32", [1] * (MAX_NDIM + 1), f"at most {MAX_NDIM}"),
        ("F32", [1 << 40, 1 << 40], f"larger than {MAX_TENSOR_BYTES} bytes"),
        ("U8", [MAX_TENSOR_BYTES + 1], "larger than"),
        ("F4", [3], "not whole bytes"),
        ("F17", [1], "unknown dtype"),
    ],
)
def test_checked_nbytes_refuses(dtype, shape, message):
    with pytest.raises(ValueError, match=message):
        checked_nbytes(dtype, shape)


def test_checked_nbytes_stops_early_on_a_hostile_shape():
    # 64 dimensions of 2**4000: the full product would be a 256,000-bit integer per step.
    start = time.perf_counter()
    with pytest.raises(ValueError, match="larger than"):
        checked_nbytes("F32", [1 << 4000] * MAX_NDIM)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    ("text", "size"), [("0", 0), ("512", 512), ("64k", 65536), ("16M", 16 << 20), (" 2g ", 2 << 30)]
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", "1.5g", "1kb"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def _nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


@pytest.mark.parametrize(
    "doc",
    [
        _nested(MAX_JSON_DEPTH),
        b'{"a": [1, {"b": [[]]}], "c": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        b'{"s": "\\\\", "t": "\\"[[[[", "u": "x\\\\\\"{{{{"}',
        b'["a\\nb", "[", "]", "{"]',
        b"",
        b'"just a string"',
    ],
    ids=["at-the-limit", "brackets-in-strings", "escapes", "escaped-newline", "empty", "string"],
)
def test_depth_within_the_limit_passes(doc):
    check_json_depth(doc)
    if doc:
        json.loads(doc)  # each is valid JSON whose real depth is within the limit


@pytest.mark.parametrize(
    "doc",
    [
        _nested(MAX_JSON_DEPTH + 1),
        _nested(100_000),
        b"[" * 100_000,  # unbalanced: the decoder would recurse before seeing it is invalid
        b'[{"a": ' * 40 + b"1" + b"}]" * 40,
        b"[" * 50 + b'"\\"' + b"[" * 50,  # an escaped quote does not hide what follows
    ],
    ids=["one-past", "deep", "unbalanced", "mixed", "escaped-quote"],
)
def test_depth_beyond_the_limit_is_refused_before_decoding(doc):
    with pytest.raises(ValueError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        check_json_depth(doc)


def test_every_refused_depth_would_have_crashed_the_decoder_or_is_past_the_bound():
    # What the scan protects: Python's decoder fails with RecursionError at these depths.
    with pytest.raises(RecursionError):
        json.loads(_nested(sys.getrecursionlimit() + 10))


def test_lone_surrogate_escapes():
    assert has_lone_surrogate_escape(b'{"w\\ud800": 1}')
    assert has_lone_surrogate_escape(b'{"w\\uDC80": 1}')
    assert not has_lone_surrogate_escape(b'{"w\\u00e9": 1}')
    assert not has_lone_surrogate_escape('{"wé": 1}'.encode())
