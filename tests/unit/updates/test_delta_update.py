"""Delta updates: XOR of bit patterns with the version before, bit-exact for every dtype, and
the default policy's choice between dense, sparse and delta."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.errors import MetadataError
from git_theta.store import decode_object
from git_theta.tensor import DTYPE_SIZES, PACKED_BITS, RawTensor, content_hash
from git_theta.updates import get_update_type
from git_theta.updates.choice import estimate, smallest
from git_theta.updates.delta import SAMPLE_SLICE_BYTES, SAMPLE_SLICES, sample, xor

DELTA = get_update_type("delta")
_UINT = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}

# Bit patterns no float arithmetic keeps: NaN payloads (quiet, signalling, negative), ±inf,
# signed zeros, the smallest and largest subnormals, the largest finite value.
SPECIAL_F32 = [
    0x7FC0_0000, 0x7FC0_1234, 0x7F80_0001, 0xFFC0_0042, 0x7F80_0000, 0xFF80_0000,
    0x0000_0000, 0x8000_0000, 0x0000_0001, 0x007F_FFFF, 0x807F_FFFF, 0x7F7F_FFFF,
]  # fmt: skip
SPECIAL_BF16 = [0x7FC0, 0x7FC1, 0x7F81, 0xFFC2, 0x7F80, 0xFF80, 0x0000, 0x8000, 0x0001, 0x007F]
SPECIAL_F16 = [0x7E00, 0x7E01, 0x7C01, 0xFE02, 0x7C00, 0xFC00, 0x0000, 0x8000, 0x0001, 0x03FF]
SPECIAL_F64 = [
    0x7FF8_0000_0000_0000, 0x7FF8_0000_0000_1234, 0x7FF0_0000_0000_0001, 0xFFF0_0000_0000_0000,
    0x8000_0000_0000_0000, 0x0000_0000_0000_0001, 0x000F_FFFF_FFFF_FFFF,
]  # fmt: skip


def _random(dtype: str, numel: int, seed: int) -> RawTensor:
    rng = np.random.default_rng(seed)
    nbytes = (
        numel * DTYPE_SIZES[dtype] if dtype not in PACKED_BITS else numel * PACKED_BITS[dtype] // 8
    )
    data = rng.integers(0, 256, nbytes, dtype=np.uint8)
    if dtype == "BOOL":
        data &= 1
    return RawTensor(dtype, (numel,), data.tobytes())


def _round_trip(before: RawTensor, after: RawTensor, write, load) -> RawTensor:
    inferred = DELTA.infer(before, after, write, {})
    assert inferred is not None and inferred.exact
    return DELTA.apply(before, inferred.record, load)


@pytest.mark.parametrize("dtype", sorted(DTYPE_SIZES) + sorted(PACKED_BITS))
def test_every_dtype_round_trips_bit_for_bit(dtype, write, load):
    before, after = _random(dtype, 1000, 1), _random(dtype, 1000, 2)
    out = _round_trip(before, after, write, load)
    assert (out.dtype, out.shape) == (dtype, (1000,))
    assert bytes(out.data) == bytes(after.data)


@pytest.mark.parametrize(
    ("dtype", "patterns"),
    [("F32", SPECIAL_F32), ("BF16", SPECIAL_BF16), ("F16", SPECIAL_F16), ("F64", SPECIAL_F64)],
)
def test_special_values_round_trip_in_every_pairing(dtype, patterns, write, load):
    """Each special value replaced by every other one (and kept): values are bits, not numbers."""
    width = DTYPE_SIZES[dtype]
    n = len(patterns)
    old = np.array([p for p in patterns for _ in range(n)], _UINT[width])
    new = np.array(patterns * n, _UINT[width])
    before = RawTensor(dtype, (n, n), old.tobytes())
    after = RawTensor(dtype, (n, n), new.tobytes())

    out = _round_trip(before, after, write, load)

    assert bytes(out.data) == new.tobytes()
    assert bytes(_round_trip(after, before, write, load).data) == old.tobytes()


def test_the_object_is_the_xor_as_unsigned_words(write, load, store):
    before = RawTensor("F32", (2, 2), np.array([1.0, 2.0, -0.0, 4.0], "<f4").tobytes())
    after = RawTensor("F32", (2, 2), np.array([1.5, 2.0, 0.0, 4.0], "<f4").tobytes())
    record = DELTA.infer(before, after, write, {}).record

    assert record["type"] == "delta" and record["transform"] == "xor"
    assert record["base"] == content_hash(before.data)
    stored = decode_object(store.path(record["object"]["oid"]).read_bytes())
    assert (stored.dtype, stored.shape) == ("U32", (4,))
    expected = np.frombuffer(before.data, "<u4") ^ np.frombuffer(after.data, "<u4")
    assert bytes(stored.data) == expected.tobytes()


def test_applied_to_another_version_is_refused(write, load):
    before, after = _random("F32", 64, 1), _random("F32", 64, 2)
    record = DELTA.infer(before, after, write, {}).record
    with pytest.raises(MetadataError, match="another version than the one before it"):
        DELTA.apply(_random("F32", 64, 3), record, load)


def test_unknown_transform_and_wrong_object_are_refused(write, load):
    before, after = _random("F32", 64, 1), _random("F32", 64, 2)
    record = dict(DELTA.infer(before, after, write, {}).record)
    with pytest.raises(MetadataError, match="transform 'sub'.*newer git-theta"):
        DELTA.apply(before, {**record, "transform": "sub"}, load)
    other = write(RawTensor("U32", (32,), bytes(128))).to_json()
    with pytest.raises(MetadataError, match="U32 x 128 bytes, its parameter F32 x 256"):
        DELTA.apply(before, {**record, "object": other}, load)


def test_infer_refuses_another_shape_or_an_empty_tensor(write):
    a, b = _random("F32", 8, 1), _random("F32", 4, 2)
    assert DELTA.infer(a, b, write, {}) is None
    empty = RawTensor("F32", (0,), b"")
    assert DELTA.infer(empty, empty, write, {}) is None


def test_xor_is_its_own_inverse_on_odd_lengths():
    a, b = bytes(range(13)), bytes(range(100, 113))
    assert bytes(xor(xor(a, b), b)) == a


def test_sample_takes_evenly_spaced_whole_elements():
    big = RawTensor("F32", (1_000_000,), np.arange(1_000_000, dtype="<u4").tobytes())
    s = sample(big)
    assert s.dtype == "U32" and len(s.data) == SAMPLE_SLICES * SAMPLE_SLICE_BYTES
    values = np.frombuffer(s.data, "<u4")
    per = SAMPLE_SLICE_BYTES // 4
    assert values[0] == 0 and values[-1] == 999_999
    assert all(np.all(np.diff(values[i * per : (i + 1) * per]) == 1) for i in range(SAMPLE_SLICES))


def _trained(dtype: str, n: int, r: float, seed: int = 0) -> tuple[RawTensor, RawTensor]:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.02, n).astype("<f4")
    w2 = (w + rng.normal(0, 1, n).astype("<f4") * w * r).astype("<f4")
    if dtype == "BF16":
        bits = [(x.view("<u4") >> 16).astype("<u2") for x in (w, w2)]
        return tuple(RawTensor("BF16", (n,), b.tobytes()) for b in bits)  # type: ignore[return-value]
    return RawTensor("F32", (n,), w.tobytes()), RawTensor("F32", (n,), w2.tobytes())


def test_the_default_picks_delta_for_a_full_fine_tune():
    before, after = _trained("F32", 300_000, 1e-3)
    est = estimate(before, after)
    assert est.delta < 0.8 * est.dense
    assert smallest(before, after) == "delta"


def test_the_default_picks_sparse_for_a_few_changed_entries():
    before = _random("F32", 300_000, 1)
    data = bytearray(before.data)
    data[400:404] = b"\x00\x00\x80\x3f"
    assert smallest(before, RawTensor("F32", (300_000,), data)) == "sparse"


def test_the_default_picks_dense_for_unrelated_versions():
    assert smallest(_random("F32", 300_000, 1), _random("F32", 300_000, 2)) == "dense"


def test_the_default_keeps_small_tensors_dense():
    """A 1 KiB bias or a step counter: an update would save bytes but cost a chain link."""
    before, after = _trained("F32", 256, 1e-3)
    assert smallest(before, after) == "dense"
    one = RawTensor("I64", (), np.array(5, "<i8").tobytes())
    assert smallest(one, RawTensor("I64", (), np.array(6, "<i8").tobytes())) == "dense"
