"""Per-tensor statistics and the textconv listing (git_theta/diffing/listing.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from git_theta.diffing import numeric
from git_theta.diffing.listing import LAYOUT_LINE, listing
from git_theta.diffing.numeric import Nonfinite, tensor_stats
from git_theta.errors import MissingObjectError
from git_theta.store import ObjectStore
from git_theta.tensor import content_hash
from testing.diffing import file_side, stored_side, tensor


def bf16(values: np.ndarray) -> np.ndarray:
    return (values.astype("<f4").view("<u4") >> 16).astype("<u2")


@pytest.mark.parametrize("dtype", ["F16", "F32", "F64", "BF16"])
def test_float_stats_match_numpy(dtype, monkeypatch):
    monkeypatch.setattr(numeric, "CHUNK_ELEMENTS", 1000)  # several chunks, one partial
    values = np.random.default_rng(5).standard_normal((37, 101)) * 3 + 0.5
    if dtype == "BF16":
        array = bf16(values)
        wide = (array.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    else:
        array = values.astype({"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype])
        wide = array.astype(np.float64)
    s = tensor_stats(tensor(dtype, array))
    assert s.numel == wide.size
    assert s.l2 == pytest.approx(np.linalg.norm(wide), rel=1e-12)
    assert s.mean == pytest.approx(wide.mean(), rel=1e-12)
    assert s.max_abs == np.abs(wide).max()
    assert s.nonfinite == Nonfinite()


def test_integer_stats_are_exact_at_the_extremes():
    i64 = np.array([np.iinfo(np.int64).min, 3, -7], "<i8")
    s = tensor_stats(tensor("I64", i64))
    assert s.max_abs == 2**63 and isinstance(s.max_abs, int)
    assert s.mean == pytest.approx(float(i64.astype(np.float64).mean()))
    u64 = np.array([2**64 - 1, 0], "<u8")
    assert tensor_stats(tensor("U64", u64)).max_abs == 2**64 - 1
    i8 = np.array([-128, 5], "i1")
    s = tensor_stats(tensor("I8", i8))
    assert (s.max_abs, s.mean, s.l2) == (128, -61.5, math.sqrt(128**2 + 25))


def test_bool_mean_is_the_fraction_true():
    s = tensor_stats(tensor("BOOL", np.array([True, False, True, True])))
    assert (s.mean, s.max_abs, s.l2) == (0.75, 1, math.sqrt(3))


def test_nan_and_inf_are_counted_and_propagate():
    values = np.ones(10, "<f4")
    values[[2, 7]] = np.nan
    values[4] = -np.inf
    s = tensor_stats(tensor("F32", values))
    assert s.nonfinite == Nonfinite(2, 1)
    assert math.isnan(s.l2) and math.isnan(s.mean) and math.isnan(s.max_abs)


def test_empty_and_complex_tensors():
    s = tensor_stats(tensor("F32", np.zeros((0, 3), "<f4")))
    assert (s.numel, s.l2, s.mean, s.max_abs) == (0, 0.0, None, None)
    c = np.array([3 + 4j, -1j], "<c8")
    s = tensor_stats(tensor("C64", c))
    assert (s.l2, s.mean, s.max_abs) == (math.sqrt(26), (3 + 3j) / 2, 5.0)


PARAMS = {
    "w": ("F32", np.array([[3.0, -4.0], [0.0, 0.0]], "<f4")),
    "bad": ("F16", np.array([1.0, np.nan, np.inf], "<f2")),
    "step": ("I64", np.array(7, "<i8")),
    "empty": ("F32", np.zeros(0, "<f4")),
}


def _hash12(name: str) -> str:
    dtype, array = PARAMS[name]
    return content_hash(tensor(dtype, array).data).split(":")[1][:12]


def test_listing_of_a_checkpoint_file(tmp_path):
    side = file_side(tmp_path, PARAMS)
    lines = list(listing(side))
    assert lines[:-1] == [
        "safetensors checkpoint: 4 parameters, 8 elements, 30 B of tensors; 1 NaN, 1 Inf",
        f"bad  F16  3  l2=nan  mean=nan  max|x|=nan  nan=1  inf=1  hash={_hash12('bad')}",
        f"empty  F32  0  empty  hash={_hash12('empty')}",
        f"step  I64  scalar  l2=7  mean=7  max|x|=7  hash={_hash12('step')}",
        f"w  F32  2x2  l2=5  mean=-0.25  max|x|=4  hash={_hash12('w')}",
    ]
    assert lines[-1].startswith(f"{LAYOUT_LINE}  hash=")


def test_a_stored_version_lists_the_same_parameters(tmp_path):
    store = ObjectStore(tmp_path / "lfs")
    side = stored_side(store, PARAMS, label="HEAD:model.safetensors")
    from_file = list(listing(file_side(tmp_path, PARAMS)))
    # Same lines; the stored test side has no layout (nor a layout line).
    assert list(listing(side)) == from_file[:-1]
    oid = side.meta.params["w"].object.oid
    store.path(oid).unlink()
    with pytest.raises(MissingObjectError) as err:
        list(listing(side))
    assert str(err.value) == (
        "HEAD:model.safetensors: objects not in the local store for 1 parameter(s): w; "
        "fetch them with `git theta fetch`"
    )


def test_summary_of_a_single_scalar(tmp_path):
    side = file_side(tmp_path, {"step": ("I64", np.array(-3, "<i8"))})
    assert list(listing(side))[:2] == [
        "safetensors checkpoint: 1 parameter, 1 element, 8 B of tensors",
        f"step  I64  scalar  l2=3  mean=-3  max|x|=3  hash="
        f"{content_hash(np.array(-3, '<i8').tobytes()).split(':')[1][:12]}",
    ]
