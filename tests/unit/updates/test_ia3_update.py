"""IA3 updates: W' = W * v along one axis (rows, columns, or a 1-D bias), float32, one rounding."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.updates import get_update_type
from git_theta.updates.ia3 import ia3_record

IA3 = get_update_type("ia3")


def _reference(w, v, axis, dtype, to_dtype, values):
    shape = [1] * len(w.shape)
    shape[axis] = w.shape[axis]
    compute = np.float64 if dtype == "F64" else np.float32
    product = values(w).astype(compute) * values(v).astype(np.float32).astype(compute).reshape(
        shape
    )
    return to_dtype(product, dtype)


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64"])
@pytest.mark.parametrize(
    ("shape", "axis", "vector_shape"),
    [
        ((6, 4), 0, (6, 1)),  # PEFT's ia3_l for an attention-style target: scales the rows
        ((6, 4), 1, (1, 4)),  # ... for a feed-forward target: scales the columns
        ((6, 4), 1, (4, 1)),  # fan_in_fan_out: the same vector, the other orientation
        ((6, 4), 0, (6,)),
        ((6,), 0, (6, 1)),  # the bias PEFT scales with the row vector
        ((5, 5), 1, (1, 5)),  # square: the axis decides, not the vector's shape
    ],
    ids=["rows", "columns", "columns-transposed-vector", "rows-flat-vector", "bias", "square"],
)
def test_apply_scales_one_axis(dtype, shape, axis, vector_shape, write, load, to_dtype, values):
    rng = np.random.default_rng(1)
    w = to_dtype(rng.standard_normal(shape) * 0.02, dtype)
    v = to_dtype(1.0 + 0.3 * rng.standard_normal(vector_shape), "F32")
    record = ia3_record(write(v), axis, tolerance=1.0)

    out = IA3.apply(w, record, load)

    assert (out.dtype, out.shape) == (dtype, shape)
    assert bytes(out.data) == bytes(_reference(w, v, axis, dtype, to_dtype, values).data)


def test_rows_and_columns_by_hand(write, load, to_dtype, values):
    w = to_dtype(np.array([[1.0, 2.0], [3.0, 4.0]]), "F32")
    v = to_dtype(np.array([[10.0], [-1.0]]), "F32")
    assert values(IA3.apply(w, ia3_record(write(v), 0, tolerance=1.0), load)).tolist() == [
        [10.0, 20.0],
        [-3.0, -4.0],
    ]
    assert values(IA3.apply(w, ia3_record(write(v), 1, tolerance=1.0), load)).tolist() == [
        [10.0, -2.0],
        [30.0, -4.0],
    ]


def test_a_bf16_vector_widens_exactly(write, load, to_dtype, values):
    w = to_dtype(np.array([[1.0, 1.0]]), "F32")
    v = to_dtype(np.array([[1.0 + 2.0**-7]]), "BF16")
    out = IA3.apply(w, ia3_record(write(v), 0, tolerance=1.0), load)
    assert values(out).tolist() == [[1.0 + 2.0**-7] * 2]


def test_infer_is_not_offered(write, to_dtype):
    w = to_dtype(np.ones((2, 2)), "F32")
    assert IA3.infer(w, w, write, {}) is None
