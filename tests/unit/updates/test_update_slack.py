"""How far a tensor merged by other software (PEFT) may sit from our rebuild and still be the
same version: one rounding of the dtype is accepted, anything larger is refused."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.tensor import RawTensor
from git_theta.updates import get_update_type
from git_theta.updates.ia3 import ia3_record
from git_theta.updates.low_rank import low_rank_record
from git_theta.updates.numeric import within

LOW_RANK = get_update_type("low-rank")
IA3 = get_update_type("ia3")
DTYPES = ["F32", "F16", "BF16"]


def _toward_zero(tensor: RawTensor) -> RawTensor:
    """Every element moved by one unit in the last place (all are positive and normal)."""
    code = "<u4" if tensor.dtype == "F32" else "<u2"
    bits = np.frombuffer(tensor.data, code)
    return RawTensor(tensor.dtype, tensor.shape, (bits - 1).astype(code).tobytes())


def _low_rank_case(dtype, write, to_dtype, *, tolerance=1.0):
    rng = np.random.default_rng(3)
    # Positive and away from zero: one ulp is then at most eps * |value| everywhere.
    w = to_dtype(0.5 + rng.random((6, 5)), dtype)
    b = to_dtype(0.1 * rng.random((6, 2)), "F32")
    a = to_dtype(0.1 * rng.random((2, 5)), "F32")
    record = low_rank_record(write(a), write(b), 2.0, transpose=False, tolerance=tolerance)
    exact = 2.0 * (b.to_numpy().astype(np.float64) @ a.to_numpy().astype(np.float64))
    return w, record, exact


def _ia3_case(dtype, write, to_dtype, values, *, tolerance=1.0):
    rng = np.random.default_rng(4)
    w = to_dtype(0.5 + rng.random((6, 5)), dtype)
    v = to_dtype(0.5 + rng.random((1, 5)), "F32")
    record = ia3_record(write(v), 1, tolerance=tolerance)
    return w, record, values(w) * values(v)


def _cases(kind, dtype, write, to_dtype, values, **kw):
    if kind == "low-rank":
        w, record, delta = _low_rank_case(dtype, write, to_dtype, **kw)
        return LOW_RANK, w, record, values(w) + delta
    w, record, exact = _ia3_case(dtype, write, to_dtype, values, **kw)
    return IA3, w, record, exact


@pytest.mark.parametrize("kind", ["low-rank", "ia3"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_rounding_away_is_the_same_version(kind, dtype, write, load, to_dtype, values):
    update, w, record, exact = _cases(kind, dtype, write, to_dtype, values)
    ours = update.apply(w, record, load)
    slack = update.slack(w, record, load)
    assert slack.shape == w.shape and slack.dtype == np.float64

    # Another implementation rounding the exact result, and ours moved by one ulp.
    theirs = to_dtype(exact, dtype)
    assert within(theirs, ours, slack)
    assert within(_toward_zero(ours), ours, slack)


@pytest.mark.parametrize("kind", ["low-rank", "ia3"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_larger_difference_is_refused(kind, dtype, write, load, to_dtype, values):
    update, w, record, _ = _cases(kind, dtype, write, to_dtype, values)
    ours = update.apply(w, record, load)
    slack = update.slack(w, record, load)

    edited = values(ours).copy()
    edited[2, 3] += 3 * slack[2, 3]
    assert not within(to_dtype(edited, dtype), ours, slack)


@pytest.mark.parametrize("kind", ["low-rank", "ia3"])
def test_tolerance_scales_the_allowance(kind, write, load, to_dtype, values):
    update, w, record, _ = _cases(kind, "F16", write, to_dtype, values)
    update, w0, strict, _ = _cases(kind, "F16", write, to_dtype, values, tolerance=0.0)
    ours = update.apply(w, record, load)
    assert np.all(update.slack(w0, strict, load) == 0)
    assert not within(_toward_zero(ours), ours, update.slack(w0, strict, load))
    wide = dict(record, tolerance=4.0)
    assert np.array_equal(update.slack(w, wide, load), 4 * update.slack(w, record, load))


def test_low_rank_slack_covers_a_rounding_of_the_base_and_of_the_product(write, load, to_dtype):
    w = to_dtype(np.array([[1.0, -2.0]]), "F16")
    a = to_dtype(np.array([[1.0, -1.0]]), "F32")
    b = to_dtype(np.array([[0.5]]), "F32")
    record = low_rank_record(write(a), write(b), -2.0, transpose=False, tolerance=1.0)
    # At least tolerance * eps(F16) * (|W| + |scale| * (|B| @ |A|)).
    at_least = np.array([[2.0**-10 * (1.0 + 1.0), 2.0**-10 * (2.0 + 1.0)]])
    assert np.all(LOW_RANK.slack(w, record, load) >= at_least)


def test_within_matches_nan_to_nan_and_needs_the_same_dtype_and_shape(to_dtype):
    nan = to_dtype(np.array([np.nan, 1.0]), "F32")
    assert within(nan, nan, np.zeros(2))
    assert not within(to_dtype(np.array([np.nan, 1.0]), "F16"), nan, np.ones(2))
    assert not within(to_dtype(np.array([[np.nan, 1.0]]), "F32"), nan, np.ones((1, 2)))
    assert not within(to_dtype(np.array([0.0, 1.0]), "F32"), nan, np.full(2, np.inf))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_exact_types_allow_no_slack(kind, write, load):
    t = RawTensor.from_numpy(np.ones(2, "<f4"))
    record = (
        {"type": "dense", "object": write(t).to_json()}
        if kind == "dense"
        else get_update_type("sparse").infer(t, t, write, {}).record
    )
    assert get_update_type(kind).slack(t, record, load) is None
