"""Sparse updates: flat indices + new raw values, set (not added), bit-exact for every dtype."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.metadata import ObjectRef
from git_theta.tensor import RawTensor
from git_theta.updates import get_update_type
from git_theta.updates.sparse import sparse_bytes

SPARSE = get_update_type("sparse")
NEG_ZERO = 0x8000_0000
QUIET_NAN = 0x7FC0_0000
NAN_PAYLOAD = 0x7FC0_1234
SIGNALLING_NAN = 0x7F80_0001


def _bits(*patterns: int) -> RawTensor:
    return RawTensor("F32", (len(patterns),), np.array(patterns, "<u4").tobytes())


def _record(write, indices: np.ndarray, values: RawTensor, count: int | None = None) -> dict:
    index_dtype = {np.dtype("<i4"): "I32", np.dtype("<i8"): "I64"}[indices.dtype]
    return {
        "type": "sparse",
        "count": int(indices.size) if count is None else count,
        "indices": write(RawTensor(index_dtype, (indices.size,), indices.tobytes())).to_json(),
        "values": write(values).to_json(),
    }


@pytest.mark.parametrize("index_dtype", ["<i4", "<i8"], ids=["I32", "I64"])
def test_values_are_set_not_added(index_dtype, write, load):
    before = RawTensor.from_numpy(np.arange(12, dtype="<f4").reshape(3, 4))
    indices = np.array([1, 6, 11], index_dtype)
    new = RawTensor.from_numpy(np.array([100.0, -1.0, 0.5], "<f4"))

    out = SPARSE.apply(before, _record(write, indices, new), load)

    expected = np.arange(12, dtype="<f4")
    expected[[1, 6, 11]] = [100.0, -1.0, 0.5]
    assert (out.dtype, out.shape) == ("F32", (3, 4))
    assert bytes(out.data) == expected.tobytes()


def test_bit_patterns_are_kept_exactly(write, load):
    """-0.0 over +0.0, NaN payloads and signalling NaNs survive: values are bits, not numbers."""
    before = _bits(0, QUIET_NAN, 0x3F80_0000, NEG_ZERO, QUIET_NAN)
    new = _bits(NEG_ZERO, NAN_PAYLOAD, SIGNALLING_NAN, 0)
    record = _record(write, np.array([0, 1, 2, 3], "<i4"), new)

    out = SPARSE.apply(before, record, load)

    assert np.frombuffer(out.data, "<u4").tolist() == [
        NEG_ZERO,
        NAN_PAYLOAD,
        SIGNALLING_NAN,
        0,
        QUIET_NAN,
    ]


@pytest.mark.parametrize(
    ("dtype", "code"),
    [("BF16", "<u2"), ("F16", "<u2"), ("F8_E4M3", "u1"), ("I64", "<i8"), ("BOOL", "u1")],
)
def test_any_dtype_is_patched_bytewise(dtype, code, write, load):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 2 if dtype == "BOOL" else 250, 10).astype(code)
    before = RawTensor(dtype, (2, 5), raw.tobytes())
    patched = raw.copy()
    patched[[0, 9]] = [1, 0]
    new = RawTensor(dtype, (2,), patched[[0, 9]].tobytes())

    out = SPARSE.apply(before, _record(write, np.array([0, 9], "<i4"), new), load)

    assert bytes(out.data) == patched.tobytes()


def test_an_empty_update_changes_nothing(write, load):
    before = RawTensor.from_numpy(np.ones(3, "<f4"))
    empty = RawTensor("F32", (0,), b"")
    out = SPARSE.apply(before, _record(write, np.array([], "<i4"), empty), load)
    assert bytes(out.data) == bytes(before.data)


def test_apply_leaves_its_input_alone(write, load):
    data = np.zeros(4, "<f4").tobytes()
    before = RawTensor("F32", (4,), data)
    SPARSE.apply(before, _record(write, np.array([2], "<i4"), _bits(NEG_ZERO)), load)
    assert before.data == bytes(16)


# ---- infer ------------------------------------------------------------------------------


def test_infer_records_exactly_the_changed_bits(write, load):
    before = _bits(0, NEG_ZERO, QUIET_NAN, QUIET_NAN, 0x3F80_0000, 0x4000_0000)
    # +0 -> -0 and one NaN payload -> another are changes; the same NaN twice is not.
    after = _bits(NEG_ZERO, NEG_ZERO, NAN_PAYLOAD, QUIET_NAN, 0x3F80_0001, 0x4000_0000)

    inferred = SPARSE.infer(before, after, write, {})

    assert inferred.exact and inferred.note == ""
    record = inferred.record
    assert (record["type"], record["count"]) == ("sparse", 3)
    indices = load(ObjectRef(**record["indices"]))
    new = load(ObjectRef(**record["values"]))
    assert (indices.dtype, indices.shape) == ("I32", (3,))
    assert np.frombuffer(indices.data, "<i4").tolist() == [0, 2, 4]
    assert (new.dtype, np.frombuffer(new.data, "<u4").tolist()) == (
        "F32",
        [NEG_ZERO, NAN_PAYLOAD, 0x3F80_0001],
    )
    assert bytes(SPARSE.apply(before, record, load).data) == bytes(after.data)


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16", "I8"])
def test_infer_then_apply_is_the_identity_on_random_edits(dtype, write, load):
    rng = np.random.default_rng(5)
    code = {"F32": "<u4", "BF16": "<u2", "F16": "<u2", "I8": "u1"}[dtype]
    raw = rng.integers(0, 2**8, (20, 30)).astype(code)
    edited = raw.copy()
    where = rng.random(raw.shape) < 0.05
    edited[where] ^= 1
    before = RawTensor(dtype, raw.shape, raw.tobytes())
    after = RawTensor(dtype, raw.shape, edited.tobytes())

    inferred = SPARSE.infer(before, after, write, {})

    assert inferred.record["count"] == int(where.sum())
    assert bytes(SPARSE.apply(before, inferred.record, load).data) == edited.tobytes()


def test_infer_of_no_change_is_an_empty_update(write, load):
    before = RawTensor.from_numpy(np.ones((2, 2), "<f4"))
    inferred = SPARSE.infer(before, before, write, {})
    assert inferred.record["count"] == 0
    assert bytes(SPARSE.apply(before, inferred.record, load).data) == bytes(before.data)


def test_sparse_bytes_counts_index_and_value_widths():
    assert sparse_bytes(10, 1000, 4) == 10 * (4 + 4)
    assert sparse_bytes(10, 2**31, 2) == 10 * (8 + 2)  # int64 indices past 2**31 elements
