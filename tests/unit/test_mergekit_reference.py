"""Our merge strategies against mergekit 0.1.5's own results (issue 5, "Correctness").

tests/fixtures/mergekit/ holds small inputs, the configs mergekit-pytorch ran on them and the
tensors it wrote (made by scripts/mergekit/make_fixtures.py, which says how to recreate them).
Here each config is translated into a git-theta strategy and options, merged through the
library (`git_theta.merges`, and `git_theta.merges.engine` for the two-sided cases), and compared:
float32 to 1e-6 relative (entry by entry, relative to the larger of the result and the inputs;
see `difference`), bfloat16 within 2 ulps. mergekit itself is never imported.

The translation, from mergekit's source (mergekit/merge_methods/):
  - linear -> average: mergekit computes sum w_i theta_i / sum w_i in float32 (normalize,
    its default); our weights are normalised too. No base.
  - task_arithmetic / ties / dare_linear / dare_ties -> task-arithmetic / ties / dare-linear /
    dare-ties: base_model is our merge base, the other models our sides in config order,
    `weight` our weights, `lambda` our lambda, `density` our density (one value for all
    models), `normalize` our normalize (both default as mergekit registers each method: true
    for ties only). mergekit applies weights before sign election and lambda after
    normalising (generalized_task_arithmetic.py), as we do. `rescale` is not an option of
    ours: a config whose value differs from our fixed convention is reported as mismatched.
  - slerp -> slerp: mergekit's t=0 is `base_model`, t=1 the other model (slerp.py calls
    slerp(t, base, other)); so base_model is our "ours" and the other model "theirs".
  - DARE's random drop cannot be compared: mergekit draws torch.bernoulli masks from torch's
    global generator (sparsify.py:130) and, with its default `rescale: true`, rescales the
    survivors by |d|_1 / |kept d|_1 (sparsify.py:53); ours draws from a seeded numpy PCG64 and
    divides by density. Only density 1 (no drop) is compared.
  - bf16: we compute in float32 and round once; that is mergekit with `dtype: float32` and
    `out_dtype: bfloat16`, which every `.BF16` case uses. (Without `dtype:`, mergekit computes
    task_arithmetic and ties in bf16 itself, rounding every step; that is not our convention
    and is not compared: docs/merges.md.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from git_theta.compute import from_compute, to_compute
from git_theta.formats import get_format
from git_theta.merges import get_strategy, parse_options
from git_theta.merges.base import resolve_weights
from git_theta.merges.engine import MergeChoice, merge_metadata
from git_theta.metadata import Metadata, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mergekit"
F32_RTOL = 1e-6
BF16_ULPS = 2

# mergekit method -> our strategy, and the value of each boolean mergekit option that our
# strategy's fixed convention equals (generalized_task_arithmetic.py, merge_methods/registry.py).
STRATEGIES = {
    "linear": ("average", {"normalize": True}),
    "task_arithmetic": ("task-arithmetic", {"rescale": False}),
    "ties": ("ties", {"rescale": False}),
    "dare_linear": ("dare-linear", {}),
    "dare_ties": ("dare-ties", {}),
    "slerp": ("slerp", {}),
}
# mergekit's defaults for those options (merge_methods/registry.py, linear.py).
MERGEKIT_DEFAULTS = {
    "linear": {"normalize": True},
    "task_arithmetic": {"normalize": False, "rescale": False},
    "ties": {"normalize": True, "rescale": False},
    "dare_linear": {"normalize": False, "rescale": True},
    "dare_ties": {"normalize": False, "rescale": True},
    "slerp": {},
}
# The task-vector methods, whose `normalize` is our `normalize` option.
WITH_NORMALIZE = ("task_arithmetic", "ties", "dare_linear", "dare_ties")


@dataclass(frozen=True)
class Ours:
    """A mergekit case in git-theta's terms."""

    strategy: str
    options: dict[str, str]
    base: str | None
    sides: tuple[str, ...]
    mismatched: tuple[str, ...]  # mergekit settings our convention does not follow


def translate(config: Mapping[str, Any]) -> Ours:
    """The git-theta strategy, options and models for a mergekit-pytorch config."""
    method = config["merge_method"]
    strategy, convention = STRATEGIES[method]
    shared = dict(config.get("parameters") or {})
    models = [m["model"] for m in config["models"]]
    per_model = [m.get("parameters") or {} for m in config["models"]]
    base = config.get("base_model")
    options: dict[str, str] = {}
    mismatched = tuple(
        f"{key}: {shared.get(key, MERGEKIT_DEFAULTS[method][key])}"
        for key, ours in convention.items()
        if bool(shared.get(key, MERGEKIT_DEFAULTS[method][key])) != ours
    )
    if method == "slerp":
        # slerp(t, base, other): t=0 is mergekit's base_model.
        others = [m for m in models if m != base]
        assert len(others) == 1, config
        return Ours(strategy, {"t": str(shared["t"])}, None, (base, others[0]), mismatched)
    sides = tuple(m for m in models if m != base)
    weights = [p["weight"] for m, p in zip(models, per_model, strict=True) if m != base]
    options["weights"] = ",".join(str(w) for w in weights)
    if method != "linear":
        assert base is not None, config
        options["lambda"] = str(shared.get("lambda", 1.0))
    if method in WITH_NORMALIZE and "normalize" in shared:
        # Absent: our default, which is mergekit's (test_normalize_defaults_are_mergekits).
        options["normalize"] = str(int(bool(shared["normalize"])))
    if method in ("ties", "dare_linear", "dare_ties"):
        densities = {
            p.get("density", 1.0) for m, p in zip(models, per_model, strict=True) if m != base
        }
        assert len(densities) == 1, f"one density for all models, not {densities}"
        options["density"] = str(densities.pop())
    return Ours(strategy, options, base if method != "linear" else None, sides, mismatched)


# ---- fixtures ---------------------------------------------------------------------------


def _load(name: str) -> dict[str, RawTensor]:
    return get_format("safetensors").load(FIXTURES / name)


MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
INPUTS = _load(MANIFEST["inputs"]["file"])
OUTPUTS = _load(MANIFEST["outputs"]["file"])
CASES = {c["id"]: c for c in MANIFEST["cases"]}
TENSORS = sorted(MANIFEST["tensors"])


def _input(dtype: str, model: str, tensor: str) -> RawTensor:
    return INPUTS[f"{dtype}/{model}/{tensor}"]


def merge_ours(case: Mapping[str, Any], tensor: str) -> RawTensor:
    """Our merge of one tensor, as git-theta's merge computes each conflicting parameter:
    values in the compute dtype, parsed options and weights, the strategy, the cast back."""
    ours = translate(case["config"])
    strategy = get_strategy(ours.strategy)
    options = parse_options(strategy, ours.options)
    base = to_compute(_input(case["dtype"], ours.base, tensor)) if ours.base else None
    sides = [to_compute(_input(case["dtype"], m, tensor)) for m in ours.sides]
    weights = resolve_weights(options, len(sides))
    values = strategy.merge(base, sides, weights, options, name=tensor)
    return from_compute(values, case["dtype"])


# ---- comparison -------------------------------------------------------------------------


def _bf16_order(t: RawTensor) -> np.ndarray:
    """bf16 bit patterns as integers in the order of the values they encode."""
    bits = np.frombuffer(t.data, "<u2").astype(np.int64)
    return np.where(bits & 0x8000, 0x8000 - bits, bits)


def difference(ours: RawTensor, ref: RawTensor, operands: Sequence[RawTensor]) -> tuple[bool, str]:
    """Whether `ours` is within tolerance of mergekit's `ref`, and how far apart they are.

    float32: |ours - ref| <= 1e-6 * max(|ref|, |x| for x in the merge's inputs), entry by
    entry. Relative to the inputs too, because where the result cancels to about zero (a
    weighted mean of values of opposite sign) two correct float32 evaluations in different
    orders differ by an ulp of the inputs, which is far more than 1e-6 of the result.
    bfloat16: at most 2 ulps apart.
    """
    assert (ours.dtype, ours.shape) == (ref.dtype, ref.shape)
    a, b = to_compute(ours).astype(np.float64), to_compute(ref).astype(np.float64)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    err = np.abs(a - b)
    if ref.dtype == "BF16":
        ulps = np.abs(_bf16_order(ours) - _bf16_order(ref))
        return bool(ulps.max() <= BF16_ULPS), (
            f"max {int(ulps.max())} ulps, {int((ulps > 0).sum())}/{ulps.size} entries differ, "
            f"max abs error {err.max():.3g}"
        )
    scale = np.maximum.reduce([np.abs(b), *(np.abs(to_compute(x)) for x in operands)])
    rel = err / np.maximum(scale, 1e-30)
    return bool((rel <= F32_RTOL).all()), (
        f"max relative error {rel.max():.3g} (of max(|ref|, |inputs|)), "
        f"max abs error {err.max():.3g}, {int((err > 0).sum())}/{err.size} entries differ"
    )


def _params() -> list[Any]:
    return [
        pytest.param(case_id, tensor, id=f"{case_id}::{tensor}")
        for case_id in CASES
        for tensor in TENSORS
    ]


def _operands(case: Mapping[str, Any], tensor: str) -> list[RawTensor]:
    ours = translate(case["config"])
    models = ([ours.base] if ours.base else []) + list(ours.sides)
    return [_input(case["dtype"], m, tensor) for m in models]


@pytest.mark.parametrize(("case_id", "tensor"), _params())
def test_matches_mergekit(case_id: str, tensor: str) -> None:
    ours, ref = merge_ours(CASES[case_id], tensor), OUTPUTS[f"{case_id}/{tensor}"]
    ok, how = difference(ours, ref, _operands(CASES[case_id], tensor))
    assert ok, f"{case_id} {tensor}: {how}"


# ---- the same through git_theta.merges.engine, as `git merge` resolves a conflicting parameter ----


def _metadata(store: ObjectStore, dtype: str, model: str) -> Metadata:
    params = {}
    for name in TENSORS:
        t = _input(dtype, model, name)
        params[name] = ParamEntry(
            t.dtype, t.shape, content_hash(t.data), store.put(encode_object(t))
        )
    return Metadata("safetensors", None, params)


TWO_SIDED = [c for c, case in CASES.items() if len(translate(case["config"]).sides) == 2]


@pytest.mark.parametrize("case_id", TWO_SIDED)
def test_file_merge_gives_the_strategy_result(case_id: str, tmp_path: Path) -> None:
    """Every tensor changed on both sides against the merge base `base`: each is a conflict
    the choice resolves, with the bytes the strategy gives above."""
    case = CASES[case_id]
    ours = translate(case["config"])
    store = ObjectStore(tmp_path / "lfs")
    base = _metadata(store, case["dtype"], "base")
    sides = [_metadata(store, case["dtype"], m) for m in ours.sides]
    choice = MergeChoice.make(ours.strategy, ours.options)
    result = merge_metadata(base, sides, choices=[choice], store=store, path="model.safetensors")
    assert result.unresolved == []
    for name in TENSORS:
        merged = store.load_tensor(result.metadata.params[name].object)
        assert bytes(merged.data) == bytes(merge_ours(case, name).data), name


# ---- the fixtures themselves ------------------------------------------------------------


def test_fixtures_come_from_mergekit_0_1_5() -> None:
    assert MANIFEST["versions"]["mergekit"] == "0.1.5"
    sizes = sum(
        (FIXTURES / n).stat().st_size
        for n in ("inputs.safetensors", "outputs.safetensors", "manifest.json")
    )
    assert sizes < 1 << 20


def test_every_mergekit_method_of_the_issue_is_covered() -> None:
    methods = {c["config"]["merge_method"] for c in CASES.values()}
    assert {"linear", "task_arithmetic", "ties", "slerp"} <= methods
    assert {c["dtype"] for c in CASES.values()} == {"F32", "BF16"}
    shapes = {len(t["shape"]) for t in MANIFEST["tensors"].values()}
    assert 1 in shapes and len(shapes) > 1


@pytest.mark.parametrize("case_id", ["slerp-t0.3.F32", "slerp-t0.75.F32"])
def test_slerp_fixtures_tell_the_directions_apart(case_id: str) -> None:
    """With t and 1 - t swapped (the other model as mergekit's base), no tensor matches: a
    reversed t direction could not pass the comparison above."""
    case = CASES[case_id]
    swapped = {**case, "config": {**case["config"], "base_model": "ft2"}}
    for name in TENSORS:
        ours = merge_ours(swapped, name)
        ok, _ = difference(ours, OUTPUTS[f"{case_id}/{name}"], _operands(case, name))
        assert not ok, name


def test_every_case_is_on_our_convention() -> None:
    assert not [c for c, case in CASES.items() if translate(case["config"]).mismatched]
    # Our arithmetic is mergekit's with `dtype: float32` (docs/merges.md): every bf16 case
    # was made that way.
    for case in CASES.values():
        if case["dtype"] == "BF16":
            assert case["config"].get("dtype") == "float32", case["id"]


@pytest.mark.parametrize("method", WITH_NORMALIZE)
def test_normalize_defaults_are_mergekits(method: str) -> None:
    strategy = get_strategy(STRATEGIES[method][0])
    default = parse_options(strategy, {})["normalize"]
    assert default == int(MERGEKIT_DEFAULTS[method]["normalize"])


def test_translation_passes_normalize_and_reports_rescale() -> None:
    dare_ties = {
        "merge_method": "dare_ties",
        "base_model": "base",
        "models": [{"model": "ft1", "parameters": {"weight": 1.0, "density": 1.0}}],
    }
    assert translate(dare_ties).mismatched == ()
    assert "normalize" not in translate(dare_ties).options
    normalized = translate({**dare_ties, "parameters": {"normalize": True}})
    assert normalized.options["normalize"] == "1"
    ties = {**dare_ties, "merge_method": "ties", "parameters": {"rescale": True}}
    assert translate(ties).mismatched == ("rescale: True",)
