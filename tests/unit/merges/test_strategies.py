"""Every registered merge strategy through one contract harness, then formula checks against
numpy references written here, independently of the implementation."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.compute import bf16_bits, from_compute, to_compute
from git_theta.errors import ConfigError
from git_theta.merges import all_strategies, get_strategy, parse_options, split_options
from git_theta.tensor import RawTensor

STRATEGIES = sorted(all_strategies())
rng = np.random.default_rng(7)
BASE = rng.standard_normal((4, 6)).astype(np.float32)
OURS = BASE + rng.standard_normal((4, 6)).astype(np.float32) * 0.1
THEIRS = BASE + rng.standard_normal((4, 6)).astype(np.float32) * 0.1


def run(name, base, sides, weights=None, param="layer.weight", inputs=None, **options):
    strategy = get_strategy(name)
    parsed = parse_options(strategy, {k: str(v) for k, v in options.items()})
    if inputs is None and strategy.side_inputs:
        # The harness gives every side tensor a strategy declares, as ones (uninformative).
        inputs = {kind: [np.ones_like(s) for s in sides] for kind in strategy.side_inputs}
    return strategy.merge(
        base, sides, weights or [1.0] * len(sides), parsed, name=param, inputs=inputs
    )


# ---- the contract, for every registered strategy ---------------------------------------


@pytest.mark.parametrize("name", STRATEGIES)
def test_contract_declares_itself(name):
    s = get_strategy(name)
    assert s.name == name
    assert s.summary and "\n" not in s.summary
    assert s.reference_url.startswith("https://")
    for option in s.all_options():
        assert option.type in (float, int, str)
        assert isinstance(option.default, option.type)


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_compute_dtype_are_preserved(name, dtype):
    out = run(name, BASE.astype(dtype), [OURS.astype(dtype), THEIRS.astype(dtype)])
    assert out.shape == BASE.shape
    assert out.dtype == dtype


@pytest.mark.parametrize("name", STRATEGIES)
def test_equal_inputs_give_that_input(name):
    # Every built-in strategy is a "mean" of its sides: the same tensor everywhere gives it back.
    out = run(name, OURS, [OURS, OURS.copy()])
    np.testing.assert_array_equal(out, OURS)


@pytest.mark.parametrize("name", STRATEGIES)
def test_is_deterministic(name):
    a = run(name, BASE, [OURS, THEIRS], density=0.5) if _takes(name, "density") else None
    b = run(name, BASE, [OURS, THEIRS], density=0.5) if _takes(name, "density") else None
    if a is None:
        a, b = run(name, BASE, [OURS, THEIRS]), run(name, BASE, [OURS, THEIRS])
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", STRATEGIES)
def test_bf16_round_trip(name):
    bits = bf16_bits(np.stack([BASE, OURS, THEIRS]))
    base, ours, theirs = (to_compute(RawTensor("BF16", BASE.shape, b.tobytes())) for b in bits)
    assert ours.dtype == np.float32
    out = run(name, base, [ours, theirs])
    tensor = from_compute(out, "BF16")
    assert tensor.dtype == "BF16" and tensor.shape == BASE.shape
    np.testing.assert_allclose(to_compute(tensor), out, rtol=2**-8)


def _takes(name, option):
    return option in {o.name for o in get_strategy(name).all_options()}


# ---- registry --------------------------------------------------------------------------


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        get_strategy("nope")
    assert str(info.value) == (
        "unknown merge strategy 'nope' (valid: take-ours, take-theirs, take-base, average, "
        "task-arithmetic, ties, dare-linear, dare-ties, slerp, fisher, model-stock)"
    )


def test_options_are_typed_and_checked():
    assert split_options("density=0.5 lambda=1.0") == {"density": "0.5", "lambda": "1.0"}
    assert parse_options(get_strategy("ties"), {"density": "0.5"})["density"] == 0.5
    with pytest.raises(
        ConfigError,
        match=r"has no option 'rho' \(its options: density, lambda, normalize, weights\)",
    ):
        parse_options(get_strategy("ties"), {"rho": "1"})
    with pytest.raises(ConfigError, match="density='x' is not a valid float"):
        parse_options(get_strategy("ties"), {"density": "x"})
    with pytest.raises(ConfigError, match="not of the form key=value"):
        split_options("density")


def test_duplicate_plugin_names_raise(monkeypatch):
    import git_theta.registry
    from git_theta.merges import BUILTIN
    from git_theta.merges.base import MergeStrategy
    from git_theta.registry import Registry

    class EP:
        name = "average"
        value = "plugin:Average"

    monkeypatch.setattr(git_theta.registry, "entry_points", lambda group: [EP()])
    fresh: Registry[MergeStrategy] = Registry(
        "merge strategy", "git_theta.merges", MergeStrategy, BUILTIN
    )
    with pytest.raises(ConfigError, match="'average' from plugin:Average is already registered"):
        fresh.find("plugin-only")


# ---- formulas, against references written here -------------------------------------------


def test_average_is_the_normalised_weighted_mean():
    out = run("average", None, [OURS, THEIRS], weights=[1.0, 3.0])
    np.testing.assert_allclose(out, 0.25 * OURS + 0.75 * THEIRS, rtol=1e-6, atol=1e-7)


def test_task_arithmetic():
    out = run("task-arithmetic", BASE, [OURS, THEIRS], weights=[0.5, 2.0], **{"lambda": 0.7})
    expected = BASE + 0.7 * (0.5 * (OURS - BASE) + 2.0 * (THEIRS - BASE))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def _ties_reference(base, sides, weights, density, lam):
    """mergekit's TIES: per-tensor magnitude trim, weights before sign election, sign of the
    sum, disjoint (weighted) mean over entries agreeing with it, times lambda, plus base."""
    trimmed = []
    for side in sides:
        d = (side - base).ravel()
        k = max(1, int(density * d.size))
        order = sorted(range(d.size), key=lambda i: (-abs(d[i]), i))
        keep = np.zeros(d.size, bool)
        keep[order[:k]] = True
        trimmed.append(np.where(keep, d, 0.0))
    weighted = [w * t for w, t in zip(weights, trimmed, strict=True)]
    total = sum(weighted)
    out = np.zeros(base.size)
    for j in range(base.size):
        sign = 1.0 if total[j] >= 0 else -1.0
        num = sum(e[j] for e in weighted if np.sign(e[j]) == sign)
        den = sum(w for w, e in zip(weights, weighted, strict=True) if np.sign(e[j]) == sign)
        out[j] = num / (den or 1.0)
    return base + lam * out.reshape(base.shape)


@pytest.mark.parametrize("density", [1.0, 0.5, 0.2])
def test_ties_matches_the_mergekit_convention(density):
    third = BASE - rng.standard_normal(BASE.shape).astype(np.float32) * 0.1
    sides, weights = [OURS, THEIRS, third], [1.0, 0.5, 2.0]
    out = run("ties", BASE, sides, weights=weights, density=density, **{"lambda": 0.8})
    expected = _ties_reference(
        BASE.astype(np.float64), [s.astype(np.float64) for s in sides], weights, density, 0.8
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_slerp_matches_the_formula_and_falls_back_to_lerp():
    t = 0.3
    a, b = OURS.ravel().astype(np.float64), THEIRS.ravel().astype(np.float64)
    omega = np.arccos(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)))
    expected = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    np.testing.assert_allclose(run("slerp", None, [OURS, THEIRS], t=t).ravel(), expected, rtol=1e-5)
    colinear = OURS * 2
    np.testing.assert_allclose(
        run("slerp", None, [OURS, colinear], t=t), OURS + t * OURS, rtol=1e-6
    )


def test_dare_is_reproducible_and_keyed_by_parameter_name():
    big = np.zeros((64, 64), np.float32)
    one = [big + 1, big + 3]
    a = run("dare-linear", big, one, density=0.5, param="x")
    b = run("dare-linear", big, one, density=0.5, param="x")
    c = run("dare-linear", big, one, density=0.5, param="y")
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    # Survivors are rescaled by 1/density: each entry is 0, 2, 6 or 8; the mean stays near 4.
    assert set(np.unique(a)) <= {0.0, 2.0, 6.0, 8.0}
    assert abs(float(a.mean()) - 4.0) < 0.3


def test_dare_mask_follows_the_stated_rule():
    from git_theta.merges.task_vectors import dare_rng

    big = np.zeros((8, 8), np.float32)
    gen = dare_rng(0, "w")
    keep0, keep1 = gen.random(big.shape) < 0.5, gen.random(big.shape) < 0.5
    expected = np.where(keep0, 2.0, 0.0) + np.where(keep1, 6.0, 0.0)
    np.testing.assert_array_equal(
        run("dare-linear", big, [big + 1, big + 3], density=0.5, param="w"), expected
    )


def test_bf16_cast_rounds_to_nearest_even():
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, np.nan], np.float32)
    assert bf16_bits(values)[:4].tolist() == [0x3F80, 0x3F80, 0x3F82, 0x3F81]
    assert bf16_bits(values)[4] == 0x7FC0
