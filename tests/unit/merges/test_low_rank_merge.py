"""Low-rank updates of one base merged by a linear strategy stay one stacked low-rank update."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.merges import get_strategy, parse_options
from git_theta.merges.low_rank import merge_low_rank
from git_theta.metadata import ParamEntry, update_refs
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash
from git_theta.updates.low_rank import low_rank_record
from git_theta.updates.rebuild import rebuild
from git_theta.updates.sparse import Sparse

OUT, IN = 64, 48


def _f32(array: np.ndarray) -> RawTensor:
    return RawTensor("F32", tuple(array.shape), np.ascontiguousarray(array, "<f4").tobytes())


def _write(store: ObjectStore, array: np.ndarray):
    return store.put(encode_object(_f32(array)))


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    return ObjectStore(tmp_path / "lfs")


@pytest.fixture
def base(store):
    w = np.random.default_rng(0).standard_normal((OUT, IN)).astype(np.float32)
    return w, ParamEntry("F32", (OUT, IN), content_hash(_f32(w).data), _write(store, w))


def _side(store, base_entry, seed: int, rank: int = 2, scale: float = 0.5, transpose=False):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rank, OUT if transpose else IN)).astype(np.float32)
    b = rng.standard_normal((IN if transpose else OUT, rank)).astype(np.float32)
    record = low_rank_record(
        _write(store, a), _write(store, b), scale, transpose=transpose, tolerance=1.0
    )
    entry = ParamEntry("F32", (OUT, IN), "", base_entry.object, (record,))
    delta = (b @ a) * np.float32(scale)
    return entry, delta.T if transpose else delta


def _values(store, entry) -> np.ndarray:
    return np.frombuffer(rebuild(entry, store.load_tensor).data, "<f4").reshape(OUT, IN)


@pytest.mark.parametrize(
    ("strategy", "raw", "expected"),
    [
        ("average", {}, [0.5, 0.5]),
        ("average", {"weights": "3,1"}, [0.75, 0.25]),
        ("task-arithmetic", {"lambda": "0.8"}, [0.8, 0.8]),
        ("task-arithmetic", {"lambda": "0.8", "normalize": "1"}, [0.4, 0.4]),
    ],
)
def test_linear_strategies_merge_into_stacked_factors(store, base, strategy, raw, expected):
    w, base_entry = base
    (one, d1), (two, d2) = _side(store, base_entry, 1), _side(store, base_entry, 2, rank=3)
    s = get_strategy(strategy)
    options = parse_options(s, raw)
    weights = [float(x) for x in raw["weights"].split(",")] if "weights" in raw else [1.0, 1.0]
    coefficients = s.linear_coefficients(weights, options)
    assert coefficients == pytest.approx(expected)
    merged = merge_low_rank(base_entry, [one, two], coefficients, store)
    assert merged is not None
    (update,) = merged.updates
    a_ref = update_refs(update)[0]  # refs in key order: a, then b
    assert store.load_tensor(a_ref).shape == (5, IN)  # ranks 2 + 3
    want = w.astype(np.float64) + expected[0] * d1 + expected[1] * d2
    got = _values(store, merged)
    assert np.allclose(got, want, rtol=0, atol=1e-5)
    assert merged.hash == content_hash(_f32(got).data)
    # The dense strategy gives the same tensor up to float32 rounding.
    dense = s.merge(w, [_values(store, one), _values(store, two)], weights, options)
    assert np.allclose(got, dense, rtol=0, atol=1e-5)


def test_not_linear_strategies_and_other_chains_fall_back_to_dense(store, base):
    w, base_entry = base
    one, _ = _side(store, base_entry, 1)
    two, _ = _side(store, base_entry, 2)
    assert get_strategy("ties").linear_coefficients([1, 1], {"lambda": 1.0}) is None
    assert get_strategy("slerp").linear_coefficients([1, 1], {"t": 0.5}) is None
    # A side with a sparse update, a transposed one, or another base: not stackable.
    sparse_after = w.copy()
    sparse_after[0, 0] += 1
    inferred = Sparse().infer(
        _f32(w), _f32(sparse_after), lambda t: store.put(encode_object(t)), {}
    )
    sparse_side = ParamEntry("F32", (OUT, IN), "", base_entry.object, (dict(inferred.record),))
    assert merge_low_rank(base_entry, [one, sparse_side], [0.5, 0.5], store) is None
    flipped, _ = _side(store, base_entry, 3, transpose=True)
    assert merge_low_rank(base_entry, [one, flipped], [0.5, 0.5], store) is None
    other_base = ParamEntry("F32", (OUT, IN), "", _write(store, w + 1), one.updates)
    assert merge_low_rank(base_entry, [other_base, two], [0.5, 0.5], store) is None


def test_dense_is_kept_when_stacked_factors_would_not_be_smaller(store, base):
    _, base_entry = base
    one, _ = _side(store, base_entry, 1, rank=14)
    two, _ = _side(store, base_entry, 2, rank=14)
    # 28 * (64 + 48) * 4 bytes >= 64 * 48 * 4 bytes
    assert merge_low_rank(base_entry, [one, two], [0.5, 0.5], store) is None
