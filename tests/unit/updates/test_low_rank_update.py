"""Low-rank updates: W' = W + scale * (B @ A) (transposed for (in, out) weights), computed in
float32 and rounded once; and the truncated SVD `git theta add --rank` stores."""

from __future__ import annotations

import re

import numpy as np
import pytest

from git_theta.metadata import ObjectRef
from git_theta.tensor import RawTensor
from git_theta.updates import get_update_type
from git_theta.updates.low_rank import low_rank_record

LOW_RANK = get_update_type("low-rank")
EPS = {"F16": 2.0**-10, "BF16": 2.0**-7, "F32": 2.0**-23, "F64": 2.0**-52}


def _reference(w, a, b, scale, transpose, dtype, to_dtype, values):
    """What the module docstring promises, recomputed here: float32 product, scale, float32
    sum (float64 for F64), one rounding to the parameter's dtype."""
    delta = (values(b).astype(np.float32) @ values(a).astype(np.float32)) * np.float32(scale)
    if transpose:
        delta = delta.T
    compute = np.float64 if dtype == "F64" else np.float32
    return to_dtype(values(w).astype(compute) + delta.astype(compute), dtype)


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64"])
@pytest.mark.parametrize("factor_dtype", ["F32", "BF16"])
@pytest.mark.parametrize("transpose", [False, True], ids=["out-in", "in-out"])
def test_apply_is_the_float32_sum_rounded_once(
    dtype, factor_dtype, transpose, write, load, to_dtype, values
):
    rng = np.random.default_rng(0)
    out_dim, in_dim, rank = 7, 5, 3
    shape = (in_dim, out_dim) if transpose else (out_dim, in_dim)
    w = to_dtype(rng.standard_normal(shape) * 0.02, dtype)
    b = to_dtype(rng.standard_normal((out_dim, rank)) * 0.1, factor_dtype)
    a = to_dtype(rng.standard_normal((rank, in_dim)) * 0.1, factor_dtype)
    record = low_rank_record(write(a), write(b), 0.75, transpose=transpose, tolerance=1.0)

    out = LOW_RANK.apply(w, record, load)

    expected = _reference(w, a, b, 0.75, transpose, dtype, to_dtype, values)
    assert (out.dtype, out.shape) == (dtype, shape)
    assert bytes(out.data) == bytes(expected.data)
    # ... which is one rounding of the dtype (plus the float32 product's own error, which
    # only shows for F64) away from the exact result.
    exact = values(b) @ values(a) * 0.75
    product_error = rank * EPS["F32"] * (np.abs(values(b)) @ np.abs(values(a))) * 0.75
    exact, product_error = (exact.T, product_error.T) if transpose else (exact, product_error)
    exact = values(w) + exact
    magnitude = np.abs(values(w)) + np.abs(exact - values(w))
    bound = EPS[dtype] * magnitude + product_error
    assert np.all(np.abs(values(out) - exact) <= bound)


@pytest.mark.parametrize(
    ("dtype", "half_ulp", "expected"),
    [
        # Ties at 1 + half an ulp go to the even neighbour: 1.0 stays, 1 + ulp goes up to 1 + 2 ulp.
        ("BF16", 2.0**-8, [1.0, 1.0 + 2.0**-6, 1.0 + 2.0**-7]),
        ("F16", 2.0**-11, [1.0, 1.0 + 2.0**-9, 1.0 + 2.0**-10]),
    ],
)
def test_ties_round_to_even(dtype, half_ulp, expected, write, load, to_dtype, values):
    ulp = 2 * half_ulp
    w = to_dtype(np.array([[1.0, 1.0 + ulp, 1.0]]), dtype)
    # The last column gets a bit more than half an ulp: it rounds up, never truncates.
    a = to_dtype(np.array([[1.0, 1.0, 1.0 + 2.0**-4]]), "F32")
    b = to_dtype(np.array([[half_ulp]]), "F32")
    record = low_rank_record(write(a), write(b), 1.0, transpose=False, tolerance=1.0)

    out = LOW_RANK.apply(w, record, load)

    assert values(out).tolist() == [expected]


def test_scale_multiplies_the_product(write, load, to_dtype, values):
    w = to_dtype(np.zeros((2, 2)), "F32")
    a = to_dtype(np.array([[1.0, 2.0]]), "F32")
    b = to_dtype(np.array([[3.0], [4.0]]), "F32")
    record = low_rank_record(write(a), write(b), -0.5, transpose=False, tolerance=1.0)
    assert values(LOW_RANK.apply(w, record, load)).tolist() == [[-1.5, -3.0], [-2.0, -4.0]]
    record = low_rank_record(write(a), write(b), -0.5, transpose=True, tolerance=1.0)
    assert values(LOW_RANK.apply(w, record, load)).tolist() == [[-1.5, -2.0], [-3.0, -4.0]]


# ---- infer: the truncated SVD of `git theta add --update-type low-rank --rank R` ----------


def _svd_case(rng, shape=(9, 6), true_rank=2, noise=1e-3):
    before = rng.standard_normal(shape).astype(np.float32)
    left = rng.standard_normal((shape[0], true_rank))
    right = rng.standard_normal((true_rank, shape[1]))
    diff = left @ right + noise * rng.standard_normal(shape)
    after = (before + diff).astype(np.float32)
    return RawTensor.from_numpy(before), RawTensor.from_numpy(after)


def _note_numbers(note: str) -> tuple[int, float, float]:
    found = re.fullmatch(
        r"rank (\d+) keeps [-0-9.]+% of the change \(relative error (\S+), max \|error\| (\S+)\)",
        note,
    )
    assert found, note
    return int(found[1]), float(found[2]), float(found[3])


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_infer_reports_the_error_of_the_rank_r_svd(rank, write, load, values):
    before, after = _svd_case(np.random.default_rng(rank))
    inferred = LOW_RANK.infer(before, after, write, {"rank": rank})

    assert inferred is not None and not inferred.exact
    record = inferred.record
    assert {k: record[k] for k in ("type", "scale", "transpose", "tolerance")} == {
        "type": "low-rank",
        "scale": 1.0,
        "transpose": False,
        "tolerance": 0.0,
    }
    b = load(ObjectRef(**record["b"]))
    a = load(ObjectRef(**record["a"]))
    assert (b.dtype, b.shape, a.dtype, a.shape) == ("F32", (9, rank), "F32", (rank, 6))

    # Eckart-Young: the best rank-r approximation leaves the trailing singular values.
    diff = values(after) - values(before)
    s = np.linalg.svd(diff, compute_uv=False)
    best = np.sqrt(np.sum(s[rank:] ** 2)) / np.linalg.norm(diff)
    rebuilt = values(LOW_RANK.apply(before, record, load))
    shown_rank, relative, worst = _note_numbers(inferred.note)
    assert shown_rank == rank
    assert relative == pytest.approx(best, rel=1e-2, abs=1e-5)
    assert worst == pytest.approx(np.max(np.abs(rebuilt - values(after))), rel=1e-2, abs=1e-6)


def test_infer_of_an_exactly_low_rank_change_is_nearly_lossless(write):
    before, after = _svd_case(np.random.default_rng(7), noise=0.0)
    inferred = LOW_RANK.infer(before, after, write, {"rank": 2})
    assert inferred is not None
    assert _note_numbers(inferred.note)[1] < 1e-5


def test_infer_clamps_the_rank_to_the_matrix(write, load):
    before, after = _svd_case(np.random.default_rng(3), shape=(4, 3))
    inferred = LOW_RANK.infer(before, after, write, {"rank": 50})
    assert inferred is not None
    assert load(ObjectRef(**inferred.record["a"])).shape == (3, 3)
    assert _note_numbers(inferred.note)[0] == 3


def test_infer_of_no_change_says_so(write):
    before, _ = _svd_case(np.random.default_rng(4))
    inferred = LOW_RANK.infer(before, before, write, {"rank": 2})
    assert inferred is not None and inferred.note == "rank 2: no change"


@pytest.mark.parametrize(
    ("before", "options"),
    [
        (RawTensor.from_numpy(np.ones(5, np.float32)), {"rank": 2}),
        (RawTensor.from_numpy(np.ones((3, 3), np.float32)), {}),
        (RawTensor.from_numpy(np.ones((3, 3), np.float32)), {"rank": None}),
        (RawTensor.from_numpy(np.ones((3, 3), np.int32)), {"rank": 2}),
    ],
    ids=["1-d", "no-rank", "rank-none", "integer"],
)
def test_infer_declines_what_it_cannot_express(before, options, write):
    assert LOW_RANK.infer(before, before, write, options) is None
