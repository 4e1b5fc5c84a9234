"""Each bad update file: one clear error naming it, a non-zero exit, nothing staged."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig

from testing.model_repo import ModelRepo
from testing.peft_models import load, make_adapter, save


@pytest.fixture
def adapted(model_repo: ModelRepo, tmp_path):
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    result = make_adapter(tmp_path / "adapter", config)
    model_repo.commit_model(result.base, "base")
    save(model_repo.path, result.merged)
    return result


def _fails(model_repo: ModelRepo, adapter, *fragments: str, kind: str = "low-rank") -> None:
    staged = model_repo.git("rev-parse", ":model.safetensors")
    proc = model_repo.theta(
        "add",
        "model.safetensors",
        "--update-type",
        kind,
        "--update-path",
        str(adapter),
        check=False,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert model_repo.git("rev-parse", ":model.safetensors") == staged


def _rewrite_adapter(adapter, edit) -> None:
    weights = adapter / "adapter_model.safetensors"
    tensors = load(weights)
    edit(tensors)
    save(weights, tensors)


def test_missing_factor(model_repo: ModelRepo, adapted):
    _rewrite_adapter(adapted.adapter, lambda t: t.pop("base_model.model.q_proj.lora_B.weight"))
    _fails(model_repo, adapted.adapter, "adapter_model.safetensors", "'q_proj'", "lora_B")


def test_wrong_factor_shapes(model_repo: ModelRepo, adapted):
    def widen(t):
        t["base_model.model.v_proj.lora_A.weight"] = torch.zeros(4, 12)

    _rewrite_adapter(adapted.adapter, widen)
    _fails(model_repo, adapted.adapter, "parameter v_proj.weight", "[16, 16]")


def test_rank_differs_from_the_config(model_repo: ModelRepo, adapted):
    config = json.loads((adapted.adapter / "adapter_config.json").read_text())
    config["r"] = 8
    (adapted.adapter / "adapter_config.json").write_text(json.dumps(config))
    _fails(model_repo, adapted.adapter, "'q_proj'", "rank 8")


def test_adapter_for_modules_the_checkpoint_lacks(model_repo: ModelRepo, adapted):
    def rename(t):
        t["base_model.model.k_proj.lora_A.weight"] = t.pop("base_model.model.q_proj.lora_A.weight")
        t["base_model.model.k_proj.lora_B.weight"] = t.pop("base_model.model.q_proj.lora_B.weight")

    _rewrite_adapter(adapted.adapter, rename)
    _fails(model_repo, adapted.adapter, "does not have", "k_proj.weight")


def test_adapter_trained_on_another_base(model_repo: ModelRepo, tmp_path, adapted):
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    other = make_adapter(tmp_path / "other", config, seed=9)  # another base model
    save(model_repo.path, other.merged)
    _fails(model_repo, other.adapter, "q_proj.weight", "trained on the committed base")


def test_dora_is_refused(model_repo: ModelRepo, adapted):
    config = json.loads((adapted.adapter / "adapter_config.json").read_text())
    config["use_dora"] = True
    (adapted.adapter / "adapter_config.json").write_text(json.dumps(config))
    _fails(model_repo, adapted.adapter, "DoRA", "not supported")


def test_unsupported_peft_type(model_repo: ModelRepo, adapted):
    config = json.loads((adapted.adapter / "adapter_config.json").read_text())
    config["peft_type"] = "PROMPT_TUNING"
    (adapted.adapter / "adapter_config.json").write_text(json.dumps(config))
    _fails(model_repo, adapted.adapter, "PROMPT_TUNING", "not supported")


def test_missing_config_file(model_repo: ModelRepo, adapted):
    (adapted.adapter / "adapter_config.json").unlink()
    _fails(model_repo, adapted.adapter, "adapter_config.json")


def test_corrupt_adapter_weights(model_repo: ModelRepo, adapted):
    weights = adapted.adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    _fails(model_repo, adapted.adapter, "adapter_model.safetensors")


def test_ia3_without_adapter_is_a_usage_error(model_repo: ModelRepo, adapted):
    proc = model_repo.theta("add", "model.safetensors", "--update-type", "ia3", check=False)
    assert proc.returncode == 1
    assert "needs --update-path" in proc.stderr.decode()


def test_update_type_must_match_the_adapter(model_repo: ModelRepo, adapted):
    _fails(model_repo, adapted.adapter, "LoRA", "--update-type low-rank", kind="ia3")
