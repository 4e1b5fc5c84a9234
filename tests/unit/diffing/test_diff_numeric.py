"""Delta statistics against numpy computed independently, dtype by dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest

from git_theta.diffing import numeric
from git_theta.diffing.numeric import delta_stats, nonfinite, to_float64
from git_theta.tensor import RawTensor


def raw(dtype: str, array: np.ndarray) -> RawTensor:
    return RawTensor(dtype, tuple(array.shape), np.ascontiguousarray(array).tobytes())


def bf16(values: np.ndarray) -> np.ndarray:
    return (values.astype("<f4").view("<u4") >> 16).astype("<u2")


def expected(old64: np.ndarray, new64: np.ndarray) -> dict[str, float]:
    d = new64 - old64
    return {
        "delta_l2": float(np.linalg.norm(d)),
        "relative_change": float(np.linalg.norm(d) / np.linalg.norm(old64)),
        "max_abs_delta": float(np.abs(d).max()),
        "cosine": float(old64 @ new64 / (np.linalg.norm(old64) * np.linalg.norm(new64))),
    }


@pytest.mark.parametrize("dtype", ["F16", "F32", "F64", "BF16"])
def test_float_stats_match_numpy(dtype, monkeypatch):
    monkeypatch.setattr(numeric, "CHUNK_ELEMENTS", 1000)  # several chunks, one partial
    rng = np.random.default_rng(3)
    old_f = rng.standard_normal((37, 101))
    new_f = old_f + rng.standard_normal(old_f.shape) * 0.01 * (rng.random(old_f.shape) < 0.3)
    if dtype == "BF16":
        old, new = bf16(old_f), bf16(new_f)
        widen = lambda a: (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)  # noqa: E731
        bits_old, bits_new = old, new
    else:
        np_type = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]
        old, new = old_f.astype(np_type), new_f.astype(np_type)
        widen = lambda a: a.astype(np.float64)  # noqa: E731
        bits_old, bits_new = old, new
    stats = delta_stats(raw(dtype, old), raw(dtype, new))
    want = expected(widen(old).ravel(), widen(new).ravel())
    for key, value in want.items():
        assert getattr(stats, key) == pytest.approx(value, rel=1e-12), key
    assert stats.fraction_changed == pytest.approx(np.mean(bits_old != bits_new))
    assert stats.numel == old.size


def test_a_dtype_change_compares_values():
    values = np.linspace(-1, 1, 64)
    stats = delta_stats(raw("F32", values.astype("<f4")), raw("F16", values.astype("<f2")))
    d = values.astype("<f2").astype(np.float64) - values.astype("<f4").astype(np.float64)
    assert stats.delta_l2 == pytest.approx(np.linalg.norm(d), rel=1e-12)
    assert stats.changed == np.count_nonzero(d)


def test_integers_are_exact_even_at_the_extremes():
    info = np.iinfo(np.int64)
    old = np.array([info.min, 0, 5], dtype="<i8")
    new = np.array([info.max, 0, 2], dtype="<i8")
    stats = delta_stats(raw("I64", old), raw("I64", new))
    assert stats.max_abs_delta == 2**64 - 1
    assert (stats.changed, stats.delta_l2, stats.relative_change, stats.cosine) == (
        2,
        None,
        None,
        None,
    )
    u = delta_stats(raw("U64", np.array([0], "<u8")), raw("U64", np.array([2**64 - 1], "<u8")))
    assert u.max_abs_delta == 2**64 - 1
    mixed = delta_stats(raw("I8", np.array([-128], "i1")), raw("U32", np.array([7], "<u4")))
    assert mixed.max_abs_delta == 135


def test_booleans_count_flips():
    stats = delta_stats(
        raw("BOOL", np.array([True, False, True, True])),
        raw("BOOL", np.array([True, True, False, True])),
    )
    assert (stats.changed, stats.max_abs_delta, stats.fraction_changed) == (2, 1, 0.5)


def test_complex_stats():
    old = np.array([1 + 1j, 2 - 1j], dtype="<c8")
    new = np.array([1 + 2j, 2 - 1j], dtype="<c8")
    stats = delta_stats(raw("C64", old), raw("C64", new))
    assert stats.delta_l2 == pytest.approx(1.0)
    assert stats.cosine == pytest.approx(
        np.vdot(old, new).real / (np.linalg.norm(old) * np.linalg.norm(new))
    )


def test_zero_old_tensor_and_shape_change():
    zeros, ones = np.zeros(4, "<f4"), np.ones(4, "<f4")
    stats = delta_stats(raw("F32", zeros), raw("F32", ones))
    assert stats.relative_change == math.inf
    assert stats.cosine is None
    assert delta_stats(raw("F32", zeros), raw("F32", zeros)).relative_change == 0.0
    assert delta_stats(raw("F32", ones), raw("F32", np.ones((2, 2), "<f4"))) is None


def test_nan_and_inf_are_counted_and_propagate():
    old = np.array([1, 2, 3, 4], dtype="<f4")
    new = np.array([np.nan, 2, np.inf, -np.inf], dtype="<f4")
    stats = delta_stats(raw("F32", old), raw("F32", new))
    assert (stats.new_nonfinite.nan, stats.new_nonfinite.inf) == (1, 2)
    assert math.isnan(stats.max_abs_delta) and math.isnan(stats.delta_l2)
    counted = nonfinite(raw("BF16", bf16(new.astype(np.float64))))
    assert (counted.nan, counted.inf, str(counted)) == (1, 2, "1 NaN, 2 Inf")
    assert not nonfinite(raw("I32", np.arange(3, dtype="<i4")))


def test_fp8_tables_spot_values():
    e4m3 = to_float64(RawTensor("F8_E4M3", (5,), bytes([0x38, 0x7E, 0x01, 0xB8, 0x7F])))
    assert e4m3[:4].tolist() == [1.0, 448.0, 2.0**-9, -1.0] and math.isnan(e4m3[4])
    e5m2 = to_float64(RawTensor("F8_E5M2", (3,), bytes([0x3C, 0x7C, 0x7B])))
    assert e5m2.tolist() == [1.0, math.inf, 57344.0]
    e8m0 = to_float64(RawTensor("F8_E8M0", (2,), bytes([127, 130])))
    assert e8m0.tolist() == [1.0, 8.0]


@pytest.mark.torch
@pytest.mark.parametrize(
    "dtype,torch_name",
    [("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("F8_E8M0", "float8_e8m0fnu")],
)
def test_fp8_tables_match_torch(dtype, torch_name):
    torch = pytest.importorskip("torch")
    if not hasattr(torch, torch_name):
        pytest.skip(f"torch has no {torch_name}")
    every_byte = bytes(range(256))
    ours = to_float64(RawTensor(dtype, (256,), every_byte))
    theirs = (
        torch.frombuffer(bytearray(every_byte), dtype=torch.uint8)
        .view(getattr(torch, torch_name))
        .to(torch.float64)
        .numpy()
    )
    np.testing.assert_array_equal(ours, theirs)
