"""The fisher strategy against the formula computed here with numpy, its zero-Fisher rule, and
how Fisher side files are found and checked."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.errors import ConfigError, MergeError
from git_theta.merges import get_strategy, parse_options
from git_theta.merges.fisher_files import Origin, fisher_name, open_fisher_files
from git_theta.metadata import ObjectRef, ParamEntry
from testing.checkpoints import write_safetensors

rng = np.random.default_rng(3)
SIDES = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(3)]
FISHERS = [rng.random((5, 4)).astype(np.float32) ** 3 for _ in range(3)]


def fisher(sides, fishers, weights=None, **options):
    strategy = get_strategy("fisher")
    parsed = parse_options(strategy, {k: str(v) for k, v in options.items()})
    weights = weights or [1.0] * len(sides)
    return strategy.merge(None, sides, weights, parsed, name="w", inputs={"fisher": fishers})


def reference(sides, fishers, weights):
    s = [x.astype(np.float64) for x in sides]
    f = [x.astype(np.float64) for x in fishers]
    num = sum(w * fi * si for w, fi, si in zip(weights, f, s, strict=True))
    den = sum(w * fi for w, fi in zip(weights, f, strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):  # rows with no Fisher: checked apart
        return num / den


@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.2, 1.0, 3.0]])
def test_matches_the_formula(weights):
    out = fisher(SIDES, FISHERS, weights)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(SIDES, FISHERS, weights), rtol=1e-5, atol=1e-6)


def test_tiny_fisher_values_do_not_underflow():
    tiny = [f * np.float32(1e-30) for f in FISHERS]
    np.testing.assert_allclose(
        fisher(SIDES, tiny), reference(SIDES, FISHERS, [1, 1, 1]), rtol=1e-5, atol=1e-6
    )


def test_elements_with_zero_fisher_sum_take_the_weighted_average():
    fishers = [f.copy() for f in FISHERS[:2]]
    fishers[0][0, :] = 0
    fishers[1][0, :] = 0  # row 0: no side has information
    fishers[1][1, :] = 0  # row 1: only ours has
    out = fisher(SIDES[:2], fishers, [1.0, 3.0])
    np.testing.assert_allclose(out[0], 0.25 * SIDES[0][0] + 0.75 * SIDES[1][0], rtol=1e-6)
    np.testing.assert_allclose(out[1], SIDES[0][1], rtol=1e-6)  # only ours is informed
    np.testing.assert_allclose(out[2:], reference(SIDES[:2], fishers, [1, 3])[2:], rtol=1e-5)


def test_all_zero_fisher_is_the_weighted_average():
    zeros = [np.zeros_like(s) for s in SIDES]
    expected = (SIDES[0] + SIDES[1] + 2 * SIDES[2]) / 4
    np.testing.assert_allclose(fisher(SIDES, zeros, [1, 1, 2]), expected, rtol=1e-6, atol=1e-7)


def test_floor_raises_small_fisher_values():
    floor = 0.05
    out = fisher(SIDES, FISHERS, floor=floor)
    raised = [np.maximum(f, floor) for f in FISHERS]
    np.testing.assert_allclose(out, reference(SIDES, raised, [1, 1, 1]), rtol=1e-5, atol=1e-6)


def test_bad_fisher_values_and_weights_are_errors():
    bad = [FISHERS[0], -FISHERS[1]]
    with pytest.raises(MergeError, match="parameter w: Fisher tensor of side 2 has negative"):
        fisher(SIDES[:2], bad)
    with pytest.raises(ConfigError, match="fisher weights must not be negative"):
        fisher(SIDES[:2], FISHERS[:2], [1.0, -1.0])
    with pytest.raises(ConfigError, match="fisher needs one Fisher tensor per side"):
        fisher(SIDES[:2], FISHERS[:1])


def test_fisher_file_convention():
    assert fisher_name("model.safetensors") == "model.fisher.safetensors"
    assert fisher_name("a/b/pytorch_model.bin") == "a/b/pytorch_model.fisher.safetensors"
    assert fisher_name("weights") == "weights.fisher.safetensors"


def _like(shape) -> ParamEntry:
    return ParamEntry("F32", shape, "xxh3_128:" + "0" * 32, ObjectRef("0" * 64, 1))


def _no_load(*args):
    raise AssertionError("not tracked")


def test_files_on_disk_are_read_per_parameter_and_checked(tmp_path):
    write_safetensors(tmp_path / "m.fisher.safetensors", {"w": ("F32", FISHERS[0])})
    (f,) = open_fisher_files(
        "", [Origin(str(tmp_path / "m.safetensors"))], repo=None, load=_no_load
    )
    got = f.tensor("w", _like((5, 4)))
    np.testing.assert_array_equal(got.to_numpy(), FISHERS[0])
    source = str(tmp_path / "m.fisher.safetensors")
    with pytest.raises(MergeError) as info:
        f.tensor("v", _like((5, 4)))
    assert str(info.value) == f"{source}: no Fisher tensor for parameter v"
    with pytest.raises(MergeError) as info:
        f.tensor("w", _like((4, 5)))
    assert str(info.value) == (
        f"{source}: Fisher tensor for parameter w is [5, 4], the parameter is [4, 5]"
    )


def test_missing_file_and_wrong_count_are_one_line_errors(tmp_path):
    with pytest.raises(MergeError, match=r"nope\.safetensors: cannot read the Fisher file"):
        open_fisher_files(str(tmp_path / "nope.safetensors"), [None], repo=None, load=_no_load)
    with pytest.raises(ConfigError, match=r"fisher='a' needs 2 files, one per side"):
        open_fisher_files("a", [None, None], repo=None, load=_no_load)
    with pytest.raises(MergeError, match="cannot tell"):
        open_fisher_files("", [None], repo=None, load=_no_load, unknown="cannot tell")
