"""model-stock against mergekit's convention, written out here with numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from git_theta.errors import ConfigError
from git_theta.merges import get_strategy, parse_options

rng = np.random.default_rng(11)
BASE = rng.standard_normal((6, 8)).astype(np.float32)
SIDES = [BASE + rng.standard_normal((6, 8)).astype(np.float32) * 0.1 for _ in range(3)]


def stock(base, sides, **options):
    s = get_strategy("model-stock")
    parsed = parse_options(s, {k: str(v) for k, v in options.items()})
    return s.merge(base, sides, [1.0] * len(sides), parsed, name="w")


def reference(base, sides, rows):
    """mergekit model_stock: mean pairwise cosine of offsets (norm product clamped to 1e-6),
    t = N cos / (1 + (N-1) cos), t * mean(sides) + (1 - t) * base; per row or whole tensor."""
    w0 = base.astype(np.float64).reshape(rows)
    ws = [s.astype(np.float64).reshape(rows) for s in sides]
    d = [w - w0 for w in ws]
    cos = []
    for a, b in itertools.combinations(d, 2):
        c = [
            np.clip(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-6), -1, 1)
            for x, y in zip(a, b, strict=True)
        ]
        cos.append(c)
    cos = np.mean(cos, axis=0)[:, None]
    n = len(ws)
    t = n * cos / (1 + (n - 1) * cos)
    return (t * (sum(ws) / n) + (1 - t) * w0).reshape(base.shape)


@pytest.mark.parametrize("n", [2, 3])
def test_whole_tensor(n):
    out = stock(BASE, SIDES[:n])
    np.testing.assert_allclose(out, reference(BASE, SIDES[:n], (1, -1)), rtol=1e-5, atol=1e-6)


def test_filter_wise_is_one_t_per_row():
    out = stock(BASE, SIDES, filter_wise=1)
    np.testing.assert_allclose(out, reference(BASE, SIDES, (6, 8)), rtol=1e-5, atol=1e-6)
    vec = BASE[0]
    out = stock(vec, [s[0] for s in SIDES], filter_wise=1)
    np.testing.assert_allclose(out, reference(vec, [s[0] for s in SIDES], (1, -1)), rtol=1e-5)


def test_opposite_offsets_give_the_base():
    d = rng.standard_normal(BASE.shape).astype(np.float32)
    np.testing.assert_array_equal(stock(BASE, [BASE + d, BASE - d]), BASE)


def test_needs_a_base_and_two_sides():
    with pytest.raises(ConfigError, match="model-stock needs a merge base"):
        stock(None, SIDES[:2])
    with pytest.raises(ConfigError, match="at least two sides"):
        stock(BASE, SIDES[:1])
