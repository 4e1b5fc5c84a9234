"""Merging two LoRA fine-tunes of one base with average or task arithmetic stays low-rank."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from testing.model_repo import ModelRepo, store_bytes
from testing.peft_models import load, make_adapter, save

TARGETS = ["q_proj", "v_proj"]


def _branch(model_repo: ModelRepo, tmp_path, name: str, seed: int, base):
    config = LoraConfig(r=2, lora_alpha=4, target_modules=TARGETS, init_lora_weights=False)
    adapted = make_adapter(tmp_path / name, config, seed=seed, base=base)
    model_repo.git("checkout", "-q", "-b", name, "main")
    save(model_repo.path, adapted.merged)
    model_repo.add_update(adapted.adapter)
    model_repo.git("commit", "-q", "-m", name)
    return adapted


@pytest.mark.parametrize(
    ("strategy", "options", "coefficients"),
    [("average", "", (0.5, 0.5)), ("task-arithmetic", "lambda=0.8", (0.8, 0.8))],
)
def test_merge_of_two_lora_branches_is_a_stacked_low_rank_update(
    model_repo: ModelRepo, tmp_path, strategy, options, coefficients
):
    torch.manual_seed(0)
    from testing.peft_models import Tiny

    base = {k: v.contiguous() for k, v in Tiny().state_dict().items()}
    model_repo.commit_model(base, "base")
    one = _branch(model_repo, tmp_path, "one", 1, base)
    two = _branch(model_repo, tmp_path, "two", 2, base)
    model_repo.git("checkout", "-q", "one")
    before = store_bytes(model_repo.repo)
    model_repo.git(
        "-c",
        f"theta.merge.strategy={strategy}",
        "-c",
        f"theta.merge.options={options}",
        "merge",
        "-q",
        "-m",
        "merge",
        "two",
    )
    entry = model_repo.metadata("HEAD")["params"]["q_proj.weight"]
    (update,) = entry["updates"]
    assert update["type"] == "low-rank"
    # Rank 2 + 2 factors in float32 per target: half of what dense 16x16 tensors would add.
    assert store_bytes(model_repo.repo) - before <= 2 * (4 * 32 * 4 + 2 * 150)
    assert model_repo.clean()

    merged = load(model_repo.path)
    for name in ("q_proj.weight", "v_proj.weight"):
        b = base[name].double()
        d1, d2 = one.merged[name].double() - b, two.merged[name].double() - b
        want = b + coefficients[0] * d1 + coefficients[1] * d2
        got = merged[name].double()
        # Each side's PEFT merge and our rebuild round differently: a few roundings of the
        # operands' magnitudes apart.
        eps = torch.finfo(torch.float32).eps
        bound = 4 * eps * (b.abs() + d1.abs() + d2.abs()) + 1e-12
        assert torch.all((got - want).abs() <= bound), name
    # Parameters only one side changed (none here) and untouched ones come through as they were.
    assert torch.equal(merged["up.weight"], base["up.weight"])


def test_merge_of_a_lora_branch_with_a_dense_edit_rebuilds_and_stores_dense(
    model_repo: ModelRepo, tmp_path
):
    torch.manual_seed(0)
    from testing.peft_models import Tiny

    base = {k: v.contiguous() for k, v in Tiny().state_dict().items()}
    model_repo.commit_model(base, "base")
    one = _branch(model_repo, tmp_path, "one", 1, base)
    model_repo.git("checkout", "-q", "-b", "dense", "main")
    edited = dict(base)
    edited["q_proj.weight"] = base["q_proj.weight"] * 1.5
    model_repo.commit_model(edited, "dense edit")
    model_repo.git("-c", "theta.merge.strategy=average", "merge", "-q", "-m", "merge", "one")
    assert "updates" not in model_repo.metadata("HEAD")["params"]["q_proj.weight"]
    got = load(model_repo.path)["q_proj.weight"].double()
    want = (edited["q_proj.weight"].double() + one.merged["q_proj.weight"].double()) / 2
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert model_repo.clean()
