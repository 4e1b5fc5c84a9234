"""The chunked task-vector merges (git_theta/merges/task_vectors.py): the trim's cut and its
tie-break, independence from the chunk size, DARE's per-side streams, `normalize`, and byte
equality with the whole-tensor computation written out here."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.errors import ConfigError
from git_theta.merges import chunking, get_strategy, parse_options
from git_theta.merges import task_vectors as tv
from git_theta.merges.task_vectors import dare_rng, magnitude_trim

rng = np.random.default_rng(5)
TASK_VECTOR_STRATEGIES = ["task-arithmetic", "ties", "dare-linear", "dare-ties"]


def merge(name, base, sides, weights=None, **options):
    strategy = get_strategy(name)
    parsed = parse_options(strategy, {k: str(v) for k, v in options.items()})
    return strategy.merge(base, sides, weights or [1.0] * len(sides), parsed, name="p")


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of 7 elements, so every test tensor spans several (and ragged) chunks."""
    monkeypatch.setattr(chunking, "CHUNK_ELEMENTS", 7)


def stable_trim(delta, density):
    """The documented trim by a stable sort: the k = max(1, floor(density * n)) largest |d|,
    equal magnitudes taken in position order, NaN ranked below every magnitude."""
    flat = delta.reshape(-1)
    k = max(1, int(density * flat.size))
    key = np.where(np.isnan(flat), np.inf, -np.abs(flat))  # ascending: largest first, NaN last
    keep = np.argsort(key, kind="stable")[:k]
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(delta.shape)


# ---- the trim ------------------------------------------------------------------------------


@pytest.mark.usefixtures("tiny_chunks")
@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.77, 0.99])
@pytest.mark.parametrize(
    "values",
    [
        "normal",
        "few-levels",  # many equal magnitudes, of both signs, at every cut
        "all-equal",
        "with-nan-inf-zero",
    ],
)
def test_trim_keeps_the_largest_and_earlier_positions_win_ties(values, density):
    n = 101
    if values == "normal":
        delta = rng.standard_normal(n).astype(np.float32)
    elif values == "few-levels":
        delta = rng.choice(np.array([0.5, -0.5, 0.25, -0.25, 1.0, 0.0], np.float32), n)
    elif values == "all-equal":
        delta = np.full(n, -0.125, np.float32)
    else:
        delta = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 2.0], np.float32), n)
    got = magnitude_trim(delta, density)
    want = stable_trim(delta, density)
    assert got.tobytes() == want.tobytes()


def test_trim_tie_break_by_position():
    delta = np.array([1, -3, 2, 3, -2, 3, 2, -2], np.float32)
    # k = 4: the three 3s, then the first of the four 2s (position 2).
    np.testing.assert_array_equal(
        magnitude_trim(delta, 0.5), np.array([0, -3, 2, 3, 0, 3, 0, 0], np.float32)
    )


def test_trim_keeps_at_least_one_entry():
    # mergekit `sparsify.magnitude`: k = max(1, int(density * numel)).
    delta = np.array([0.1, -0.7, 0.3], np.float32)
    np.testing.assert_array_equal(magnitude_trim(delta, 0.2), np.array([0, -0.7, 0], np.float32))
    assert magnitude_trim(np.zeros(0, np.float32), 0.5).size == 0
    np.testing.assert_array_equal(magnitude_trim(delta, 1.0), delta)


# ---- whole-tensor equality ------------------------------------------------------------------


def whole_tensor(base, sides, weights, *, trim, drop, consensus, normalize, density, lam, seed):
    """The task-vector merge over whole stacked tensors, as git-theta computed it before it
    worked in chunks; the chunked one must give the same bytes."""
    ctype = base.dtype.type
    gen = dare_rng(seed, "p")
    deltas = []
    for side, w in zip(sides, weights, strict=True):
        d = side - base
        if trim:
            d = stable_trim(d, density)
        elif drop:
            keep = gen.random(d.shape) < density
            d = np.where(keep, d / ctype(density), ctype(0))
        deltas.append(ctype(w) * d)
    stacked = np.stack(deltas)
    w_col = np.array(weights, dtype=base.dtype).reshape((-1,) + (1,) * base.ndim)
    if consensus:
        sign = np.where(stacked.sum(axis=0) >= 0, 1, -1).astype(base.dtype)
        mask = (np.sign(stacked) == sign).astype(base.dtype)
        mixed = (stacked * mask).sum(axis=0)
        divisor = (w_col * mask).sum(axis=0)
        divisor[divisor == 0] = 1
    else:
        mixed = stacked.sum(axis=0)
        divisor = np.broadcast_to(w_col.sum(axis=0), mixed.shape).copy()
        divisor[np.abs(divisor) < 1e-8] = 1
    if normalize:
        mixed = mixed / divisor
    return (base + ctype(lam) * mixed).astype(base.dtype)


KINDS = {
    "task-arithmetic": {"trim": False, "drop": False, "consensus": False},
    "ties": {"trim": True, "drop": False, "consensus": True},
    "dare-linear": {"trim": False, "drop": True, "consensus": False},
    "dare-ties": {"trim": False, "drop": True, "consensus": True},
}


@pytest.mark.usefixtures("tiny_chunks")
@pytest.mark.parametrize("name", TASK_VECTOR_STRATEGIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_sides", [2, 3])
@pytest.mark.parametrize("normalize", [0, 1])
def test_chunked_merge_equals_the_whole_tensor_computation(name, dtype, n_sides, normalize):
    shape = (9, 13)
    base = rng.standard_normal(shape).astype(dtype)
    levels = np.array([0.5, -0.5, 0.25, 0.0, -0.0, 1.0], dtype)
    sides = [base + rng.choice(levels, shape) for _ in range(n_sides)]  # ties and zeros
    weights = [1.0, -0.5, 2.0][:n_sides]
    options = {"lambda": 0.7, "normalize": normalize}
    if name != "task-arithmetic":
        options["density"] = 0.4
    if name.startswith("dare"):
        options["seed"] = 9
    got = merge(name, base, sides, weights, **options)
    want = whole_tensor(
        base, sides, weights, **KINDS[name], normalize=normalize, density=0.4, lam=0.7, seed=9
    )
    assert got.dtype == dtype and got.shape == shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("name", TASK_VECTOR_STRATEGIES)
def test_result_does_not_depend_on_the_chunk_size(name, monkeypatch):
    base = rng.standard_normal((40, 31)).astype(np.float32)
    sides = [base + rng.standard_normal(base.shape).astype(np.float32) for _ in range(3)]
    options = {} if name == "task-arithmetic" else {"density": 0.3}
    results = []
    for size in (1, 64, 1 << 18):
        monkeypatch.setattr(chunking, "CHUNK_ELEMENTS", size)
        results.append(merge(name, base, sides, **options).tobytes())
    assert results[0] == results[1] == results[2]


def test_scalar_parameters_merge():
    base = np.ones((), np.float32)
    sides = [np.full((), 2.0, np.float32), np.full((), -1.0, np.float32)]
    # Task vectors +1 and -2: the sum elects -, so only -2 counts: 1 + (-2) / 1.
    out = merge("ties", base, sides)
    assert out.shape == () and float(out) == -1.0


# ---- normalize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "default"),
    [("task-arithmetic", 0), ("ties", 1), ("dare-linear", 0), ("dare-ties", 0)],
)
def test_normalize_defaults_follow_mergekit(name, default):
    assert parse_options(get_strategy(name), {})["normalize"] == default


def test_normalize_divides_by_the_agreeing_weights():
    base = np.zeros(4, np.float32)
    sides = [np.array([1, 2, -1, 0], np.float32), np.array([3, -4, -1, 0], np.float32)]
    weights = [0.5, 2.0]
    plain = merge("dare-ties", base, sides, weights)  # density 1: no drop
    # e = [0.5, 1, -0.5, 0] and [6, -8, -2, 0]; elected signs +, -, -, +.
    np.testing.assert_allclose(plain, [6.5, -8, -2.5, 0])
    divided = merge("dare-ties", base, sides, weights, normalize=1)
    np.testing.assert_allclose(divided, [6.5 / 2.5, -8 / 2.0, -2.5 / 2.5, 0])
    assert merge("ties", base, sides, weights, normalize=0).tobytes() == plain.tobytes()
    summed = merge("task-arithmetic", base, sides, weights, normalize=1)
    np.testing.assert_allclose(summed, (0.5 * sides[0] + 2.0 * sides[1]) / 2.5)


def test_normalize_must_be_0_or_1():
    with pytest.raises(ConfigError, match="normalize=2 must be 0 or 1"):
        merge("ties", np.zeros(2, np.float32), [np.ones(2, np.float32)] * 2, normalize=2)


@pytest.mark.usefixtures("tiny_chunks")
def test_dare_side_streams_continue_one_another():
    """Side i draws where the whole-tensor draws of sides 0..i-1 end."""
    n = 23
    streams = tv._dare_streams(4, "p", 3, n)
    whole = dare_rng(4, "p").random(3 * n)
    pieces = [np.concatenate([s.random(5), s.random(n - 5)]) for s in streams]
    assert np.concatenate(pieces).tobytes() == whole.tobytes()
