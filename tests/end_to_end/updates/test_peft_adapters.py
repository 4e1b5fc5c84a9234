"""PEFT adapters stored as what they are: `git theta add --update-type low-rank|ia3`, checked
against PEFT's own merge_and_unload() on a real torch model."""

from __future__ import annotations

import json

import pytest
import torch
from peft import IA3Config, LoraConfig

from testing.model_repo import ModelRepo, assert_within_one_rounding, store_bytes
from testing.peft_models import load, make_adapter, save

LORA_TARGETS = ["q_proj", "v_proj"]


def _lora(**kw) -> LoraConfig:
    kw.setdefault("target_modules", LORA_TARGETS)
    kw.setdefault("r", 4)
    kw.setdefault("lora_alpha", 8)
    return LoraConfig(init_lora_weights=False, **kw)


def _add_adapter(model_repo: ModelRepo, adapted, kind: str = "low-rank"):
    return model_repo.add_update(adapted.adapter, kind)


def _check_against_peft(model_repo: ModelRepo, adapted, changed: set[str]) -> None:
    assert model_repo.clean(), model_repo.git("status", "--porcelain")
    out = model_repo.checkout_fresh()
    assert model_repo.clean()
    for name, tensor in adapted.merged.items():
        if name in changed:
            assert_within_one_rounding(out[name], tensor, adapted.base[name])
        else:
            assert torch.equal(out[name], tensor), name


@pytest.mark.parametrize(
    ("config", "q_scale", "v_scale"),
    [
        (_lora(), 8 / 4, 8 / 4),
        (_lora(use_rslora=True), 8 / 2, 8 / 2),
        (_lora(rank_pattern={"v_proj": 2}, alpha_pattern={"q_proj": 32}), 32 / 4, 8 / 2),
    ],
    ids=["lora", "rslora", "rank-and-alpha-patterns"],
)
def test_lora_adapter_is_stored_as_factors_and_checks_out_as_peft_merges(
    model_repo: ModelRepo, tmp_path, config, q_scale, v_scale
):
    adapted = make_adapter(tmp_path / "adapter", config)
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    before = store_bytes(model_repo.repo)

    out = _add_adapter(model_repo, adapted).stdout.decode()
    assert "2 low-rank" in out

    meta = model_repo.metadata()
    for name in ("q_proj.weight", "v_proj.weight"):
        (update,) = meta["params"][name]["updates"]
        assert update["type"] == "low-rank"
        base_entry = json.loads(model_repo.git("cat-file", "-p", "HEAD:model.safetensors"))
        assert meta["params"][name]["object"] == base_entry["params"][name]["object"]
    assert meta["params"]["q_proj.weight"]["updates"][0]["scale"] == q_scale
    assert meta["params"]["v_proj.weight"]["updates"][0]["scale"] == v_scale
    # The commit adds the factors, not a dense copy (1.1x the adapter file's bytes).
    adapter_bytes = (adapted.adapter / "adapter_model.safetensors").stat().st_size
    assert store_bytes(model_repo.repo) - before <= 1.1 * adapter_bytes
    model_repo.git("commit", "-q", "-m", "lora")
    _check_against_peft(model_repo, adapted, {"q_proj.weight", "v_proj.weight"})


def test_rslora_scale_is_alpha_over_sqrt_rank(model_repo: ModelRepo, tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora(use_rslora=True, lora_alpha=6))
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    _add_adapter(model_repo, adapted)
    assert model_repo.metadata()["params"]["q_proj.weight"]["updates"][0]["scale"] == 3.0


def test_file_keeping_the_base_is_rewritten_with_the_merged_weights(
    model_repo: ModelRepo, tmp_path
):
    adapted = make_adapter(tmp_path / "adapter", _lora())
    model_repo.commit_model(adapted.base, "base")
    out = _add_adapter(model_repo, adapted).stdout.decode()
    assert "rewrote model.safetensors" in out
    now = load(model_repo.path)
    assert_within_one_rounding(
        now["q_proj.weight"], adapted.merged["q_proj.weight"], adapted.base["q_proj.weight"]
    )
    assert model_repo.git("diff", "--name-only") == ""  # the work tree matches the index
    model_repo.git("commit", "-q", "-m", "lora")
    _check_against_peft(model_repo, adapted, {"q_proj.weight", "v_proj.weight"})


def test_fan_in_fan_out_conv1d_and_embedding(model_repo: ModelRepo, tmp_path):
    config = _lora(target_modules=["c_attn", "embed", "q_proj"], fan_in_fan_out=True)
    adapted = make_adapter(tmp_path / "adapter", config)
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    _add_adapter(model_repo, adapted)
    params = model_repo.metadata()["params"]
    assert params["c_attn.weight"]["updates"][0]["transpose"] is True
    assert params["embed.weight"]["updates"][0]["transpose"] is True
    # PEFT applies the flag to Conv1D only; the square Linear keeps (out, in).
    assert params["q_proj.weight"]["updates"][0]["transpose"] is False
    model_repo.git("commit", "-q", "-m", "lora")
    _check_against_peft(model_repo, adapted, {"c_attn.weight", "embed.weight", "q_proj.weight"})


def test_bfloat16_model(model_repo: ModelRepo, tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora(), dtype=torch.bfloat16)
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    _add_adapter(model_repo, adapted)
    model_repo.git("commit", "-q", "-m", "lora")
    _check_against_peft(model_repo, adapted, {"q_proj.weight", "v_proj.weight"})


def test_ia3_scales_rows_and_bias_or_columns(model_repo: ModelRepo, tmp_path):
    config = IA3Config(
        target_modules=["q_proj", "up"], feedforward_modules=["up"], init_ia3_weights=False
    )
    adapted = make_adapter(tmp_path / "adapter", config)
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    before = store_bytes(model_repo.repo)
    out = _add_adapter(model_repo, adapted, "ia3").stdout.decode()
    assert "3 ia3" in out  # q_proj weight and bias, up weight (feed-forward: bias untouched)
    params = model_repo.metadata()["params"]
    assert params["q_proj.weight"]["updates"][0]["axis"] == 0
    assert params["q_proj.bias"]["updates"][0]["axis"] == 0
    assert params["up.weight"]["updates"][0]["axis"] == 1
    assert "updates" not in params["up.bias"]
    vectors = 16 * 4 + 16 * 4  # the two ia3_l vectors, float32
    assert store_bytes(model_repo.repo) - before <= 1.1 * vectors + 2 * 200  # + object headers
    model_repo.git("commit", "-q", "-m", "ia3")
    _check_against_peft(model_repo, adapted, {"q_proj.weight", "q_proj.bias", "up.weight"})


def test_a_second_adapter_on_top_makes_a_chain(model_repo: ModelRepo, tmp_path):
    first = make_adapter(tmp_path / "one", _lora(), seed=0)
    model_repo.commit_model(first.base, "base")
    save(model_repo.path, first.merged)
    _add_adapter(model_repo, first)
    model_repo.git("commit", "-q", "-m", "first")
    second = make_adapter(tmp_path / "two", _lora(), seed=1, base=load(model_repo.path))
    save(model_repo.path, second.merged)
    _add_adapter(model_repo, second)
    model_repo.git("commit", "-q", "-m", "second")
    updates = model_repo.metadata()["params"]["q_proj.weight"]["updates"]
    assert [u["type"] for u in updates] == ["low-rank", "low-rank"]
    _check_against_peft(model_repo, second, {"q_proj.weight", "v_proj.weight"})
    # Adding the same adapter again changes nothing.
    _add_adapter(model_repo, second)
    assert model_repo.clean()


def test_plain_git_add_of_the_peft_merge_keeps_the_entry(model_repo: ModelRepo, tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora())
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    _add_adapter(model_repo, adapted)
    model_repo.git("commit", "-q", "-m", "lora")
    staged = model_repo.git("rev-parse", ":model.safetensors")
    # PEFT's bytes written again (they may differ from our rebuild by a rounding).
    save(model_repo.path, adapted.merged)
    model_repo.git("add", "model.safetensors")
    assert model_repo.git("rev-parse", ":model.safetensors") == staged
    assert model_repo.clean()


@pytest.mark.parametrize("step", ["one-ulp", "1e-7"])
def test_an_edit_within_rounding_of_the_adapter_is_recorded(model_repo: ModelRepo, tmp_path, step):
    # "Unchanged" means byte-equal: an edit smaller than the rounding allowance an adapter's
    # merge is checked with is still an edit (the allowance only decides what `add` accepts
    # as "base plus this adapter").
    adapted = make_adapter(tmp_path / "adapter", _lora())
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    _add_adapter(model_repo, adapted)
    model_repo.git("commit", "-q", "-m", "lora")
    assert model_repo.clean()
    edited = dict(adapted.merged)
    weight = edited["q_proj.weight"].clone()
    flat = weight.view(-1)
    if step == "one-ulp":
        flat[5] = torch.nextafter(flat[5], torch.tensor(float("inf"), dtype=flat.dtype))
    else:
        flat[5] += 1e-7
    assert not torch.equal(weight, adapted.merged["q_proj.weight"])
    edited["q_proj.weight"] = weight
    save(model_repo.path, edited)
    assert not model_repo.clean()
    staged = model_repo.git("rev-parse", ":model.safetensors")
    model_repo.git("add", "model.safetensors")
    assert model_repo.git("rev-parse", ":model.safetensors") != staged
    model_repo.git("commit", "-q", "-m", "tiny edit")
    out = model_repo.checkout_fresh()
    assert torch.equal(out["q_proj.weight"], weight)
    assert model_repo.clean()
