"""Reading real PEFT adapters (made with peft on testing.peft_models.Tiny, init_lora_weights=False):
which parameters they change, with what scale and orientation, and what is refused."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from safetensors.torch import load_file, save_file  # noqa: E402

from git_theta.errors import CheckpointError  # noqa: E402
from git_theta.tensor import RawTensor  # noqa: E402
from git_theta.updates import get_update_type  # noqa: E402
from git_theta.updates.numeric import within  # noqa: E402
from git_theta.updates.peft import AdapterUpdate, read_adapter  # noqa: E402
from testing.model_repo import assert_within_one_rounding  # noqa: E402
from testing.peft_models import Adapted, make_adapter  # noqa: E402

WEIGHTS = "adapter_model.safetensors"


def _lora(**kw):
    kw.setdefault("target_modules", ["q_proj", "v_proj"])
    kw.setdefault("r", 4)
    kw.setdefault("lora_alpha", 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.LoraConfig(init_lora_weights=False, **kw)


def _ia3(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.IA3Config(init_ia3_weights=False, **kw)


def _raw(tensor) -> RawTensor:
    array = tensor.detach().contiguous()
    if array.dtype == torch.bfloat16:
        bits = array.view(torch.int16).numpy().view("<u2")
        return RawTensor("BF16", tuple(array.shape), bits.tobytes())
    return RawTensor.from_numpy(array.numpy())


def _torch(tensor: RawTensor):
    if tensor.dtype == "BF16":
        bits = np.frombuffer(tensor.data, "<i2").reshape(tensor.shape).copy()
        return torch.from_numpy(bits).view(torch.bfloat16)
    return torch.from_numpy(tensor.to_numpy().copy())


def _rebuilt(adapted: Adapted, name: str, update: AdapterUpdate, write, load):
    """Our rebuild of parameter `name` from the adapter (its most likely record), through a
    real object store."""
    base = _raw(adapted.base[name])
    records = update.records(base.shape, write, tolerance=1.0)
    assert records
    return records[0], _torch(get_update_type(update.kind).apply(base, records[0], load))


def _file_tensor(adapter: Path, key: str):
    return load_file(str(adapter / WEIGHTS))[f"base_model.model.{key}"]


# ---- LoRA ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "scales", "ranks"),
    [
        (_lora(), {"q_proj": 8 / 4, "v_proj": 8 / 4}, {"q_proj": 4, "v_proj": 4}),
        (_lora(use_rslora=True), {"q_proj": 8 / 2, "v_proj": 8 / 2}, {"q_proj": 4, "v_proj": 4}),
        (
            _lora(rank_pattern={"v_proj": 2}, alpha_pattern={"q_proj": 32}),
            {"q_proj": 32 / 4, "v_proj": 8 / math.sqrt(2) ** 2},
            {"q_proj": 4, "v_proj": 2},
        ),
        (
            _lora(use_rslora=True, rank_pattern={"^v_proj": 2}, alpha_pattern={"q_.*": 6}),
            {"q_proj": 6 / 2, "v_proj": 8 / math.sqrt(2)},
            {"q_proj": 4, "v_proj": 2},
        ),
    ],
    ids=["lora", "rslora", "patterns", "rslora-regex-patterns"],
)
def test_lora_factors_and_scale(config, scales, ranks, tmp_path, write, load):
    adapted = make_adapter(tmp_path / "adapter", config)

    updates = read_adapter(adapted.adapter)

    assert sorted(updates) == ["q_proj.weight", "v_proj.weight"]
    for module in ("q_proj", "v_proj"):
        update = updates[f"{module}.weight"]
        assert (update.kind, update.module, update.transpose) == ("low-rank", module, None)
        assert update.scale == pytest.approx(scales[module], rel=1e-12)
        a, b = update.tensors["a"], update.tensors["b"]
        assert (a.dtype, a.shape, b.shape) == ("F32", (ranks[module], 16), (16, ranks[module]))
        assert torch.equal(_torch(a), _file_tensor(adapted.adapter, f"{module}.lora_A.weight"))
        assert torch.equal(_torch(b), _file_tensor(adapted.adapter, f"{module}.lora_B.weight"))
        record, ours = _rebuilt(adapted, f"{module}.weight", update, write, load)
        assert record["transpose"] is False
        assert record["scale"] == update.scale
        name = f"{module}.weight"
        assert_within_one_rounding(ours, adapted.merged[name], adapted.base[name])


def test_the_weights_file_may_be_named_instead_of_the_directory(tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora())
    assert read_adapter(adapted.adapter / WEIGHTS).keys() == read_adapter(adapted.adapter).keys()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_embedding_factors_are_transposed(dtype, tmp_path, write, load):
    adapted = make_adapter(tmp_path / "adapter", _lora(target_modules=["embed"]), dtype=dtype)

    update = read_adapter(adapted.adapter)["embed.weight"]

    assert (update.transpose, update.scale) == (True, 2.0)
    assert (update.tensors["a"].shape, update.tensors["b"].shape) == ((4, 40), (16, 4))
    record, ours = _rebuilt(adapted, "embed.weight", update, write, load)
    assert record["transpose"] is True
    assert ours.dtype == dtype
    assert_within_one_rounding(ours, adapted.merged["embed.weight"], adapted.base["embed.weight"])


def test_fan_in_fan_out_conv1d_is_transposed_by_shape(tmp_path, write, load):
    config = _lora(target_modules=["c_attn"], fan_in_fan_out=True)
    adapted = make_adapter(tmp_path / "adapter", config)

    update = read_adapter(adapted.adapter)["c_attn.weight"]

    # Conv1D stores W as (in, out) = (16, 24); B @ A is (out, in) = (24, 16).
    assert (update.transpose, update.fan_in_fan_out, update.hint_transpose) == (None, True, True)
    record, ours = _rebuilt(adapted, "c_attn.weight", update, write, load)
    assert record["transpose"] is True
    assert_within_one_rounding(ours, adapted.merged["c_attn.weight"], adapted.base["c_attn.weight"])


def test_a_square_weight_offers_both_orientations_flag_first(tmp_path, write):
    natural = read_adapter(make_adapter(tmp_path / "a", _lora()).adapter)["q_proj.weight"]
    # PEFT applies fan_in_fan_out only to Conv1D but writes it for the whole adapter.
    flagged = dataclasses.replace(natural, fan_in_fan_out=True)
    orientations = [r["transpose"] for r in natural.records((16, 16), write, tolerance=1.0)]
    assert orientations == [False, True]
    orientations = [r["transpose"] for r in flagged.records((16, 16), write, tolerance=1.0)]
    assert orientations == [True, False]
    assert natural.records((16, 17), write, tolerance=1.0) == []


# ---- IA3 ----------------------------------------------------------------------------------


def test_ia3_rows_columns_and_optional_bias(tmp_path, write, load):
    config = _ia3(target_modules=["q_proj", "up", "down"], feedforward_modules=["down"])
    adapted = make_adapter(tmp_path / "adapter", config)

    updates = read_adapter(adapted.adapter)

    assert {name: (u.axis, u.optional) for name, u in updates.items()} == {
        "q_proj.weight": (0, False),
        "q_proj.bias": (0, True),  # PEFT scales an attention-style target's bias too
        "up.weight": (0, False),
        "up.bias": (0, True),
        "down.weight": (1, False),  # feed-forward: columns, bias left alone
    }
    assert updates["down.weight"].tensors["vector"].shape == (1, 32)
    assert updates["up.weight"].tensors["vector"].shape == (32, 1)
    for name, update in updates.items():
        assert update.kind == "ia3"
        _, ours = _rebuilt(adapted, name, update, write, load)
        assert_within_one_rounding(ours, adapted.merged[name], adapted.base[name])
    assert torch.equal(adapted.merged["down.bias"], adapted.base["down.bias"])


def test_ia3_fan_in_fan_out_flips_the_axis(tmp_path, write, load):
    config = _ia3(target_modules=["c_attn"], feedforward_modules=[], fan_in_fan_out=True)
    adapted = make_adapter(tmp_path / "adapter", config)

    updates = read_adapter(adapted.adapter)

    assert (updates["c_attn.weight"].axis, updates["c_attn.bias"].axis) == (1, 0)
    for name in ("c_attn.weight", "c_attn.bias"):
        _, ours = _rebuilt(adapted, name, updates[name], write, load)
        assert_within_one_rounding(ours, adapted.merged[name], adapted.base[name])


# ---- refusals -----------------------------------------------------------------------------


def _refused(path: Path, message: str) -> None:
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        read_adapter(path)


def test_dora_is_refused(tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora(use_dora=True))
    _refused(
        adapted.adapter,
        f"{adapted.adapter / WEIGHTS}: DoRA adapters are not supported (their merge is not a "
        "low-rank update); merge with PEFT and add the result as a dense update",
    )


def test_dora_is_refused_by_its_tensors_too(tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora(use_dora=True))
    config = adapted.adapter / "adapter_config.json"
    config.write_text(json.dumps(dict(json.loads(config.read_text()), use_dora=False)))
    _refused(adapted.adapter, f"{adapted.adapter / WEIGHTS}: DoRA adapters are not supported")


def test_lora_bias_is_refused(tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora(lora_bias=True))
    _refused(
        adapted.adapter,
        f"{adapted.adapter / WEIGHTS}: LoRA biases adapters are not supported (their merge is "
        "not a low-rank update); merge with PEFT and add the result as a dense update",
    )


class _Conv(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)


def test_conv_factors_are_refused(tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(_Conv(), _lora(target_modules=["conv"]))
        model.save_pretrained(str(tmp_path / "adapter"))
    _refused(
        tmp_path / "adapter",
        f"{tmp_path / 'adapter' / WEIGHTS}: module 'conv': factors of shapes (8, 4, 1, 1) and "
        "(4, 3, 3, 3) are not matrices (LoRA on convolutions is not supported)",
    )


@pytest.mark.parametrize("dropped", ["lora_A", "lora_B"])
def test_a_missing_factor_is_named(dropped, tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora())
    weights = adapted.adapter / WEIGHTS
    tensors = load_file(str(weights))
    del tensors[f"base_model.model.v_proj.{dropped}.weight"]
    save_file(tensors, str(weights))
    _refused(adapted.adapter, f"{weights}: module 'v_proj' has no {dropped} factor")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"r": 3}, "module 'q_proj': factor shapes B (16, 4) and A (4, 16) do not have the configured rank 3"),
        ({"peft_type": "LOHA"}, "peft_type 'LOHA' is not supported (supported: LORA, IA3); add the merged model as a dense update instead"),
        ({"target_parameters": ["q_proj.weight"]}, "LoRA on target_parameters is not supported"),
    ],
    ids=["rank", "peft-type", "target-parameters"],
)  # fmt: skip
def test_inconsistent_configs_are_refused(change, message, tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora())
    config = adapted.adapter / "adapter_config.json"
    config.write_text(json.dumps(dict(json.loads(config.read_text()), **change)))
    source = config if "peft_type" in change else adapted.adapter / WEIGHTS
    _refused(adapted.adapter, f"{source}: {message}")


def test_missing_or_unreadable_files(tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora())
    config = adapted.adapter / "adapter_config.json"
    config.write_text("{not json")
    with pytest.raises(
        CheckpointError, match=f"^{re.escape(str(config))}: not a readable adapter config: "
    ):
        read_adapter(adapted.adapter)
    config.unlink()
    _refused(
        adapted.adapter,
        f"{adapted.adapter}: no adapter_config.json (a PEFT adapter directory has both "
        "adapter_config.json and adapter_model.safetensors)",
    )
    _refused(
        tmp_path,
        f"{tmp_path}: no adapter_config.json (a PEFT adapter directory has both "
        "adapter_config.json and adapter_model.safetensors)",
    )


def test_keys_outside_the_base_model_and_empty_adapters(tmp_path):
    adapted = make_adapter(tmp_path / "adapter", _lora())
    weights = adapted.adapter / WEIGHTS
    save_file({"q_proj.lora_A.weight": torch.ones(4, 16)}, str(weights))
    _refused(
        adapted.adapter,
        f"{weights}: tensor 'q_proj.lora_A.weight' does not start with 'base_model.model.'",
    )
    save_file({"base_model.model.q_proj.other": torch.ones(2)}, str(weights))
    _refused(adapted.adapter, f"{weights}: the adapter holds no LoRA factors")


def test_ia3_vectors_must_be_n_by_1_or_1_by_n(tmp_path):
    adapted = make_adapter(
        tmp_path / "adapter", _ia3(target_modules=["q_proj"], feedforward_modules=[])
    )
    weights = adapted.adapter / WEIGHTS
    save_file({"base_model.model.q_proj.ia3_l": torch.ones(2, 3, 1, 1)}, str(weights))
    _refused(
        adapted.adapter,
        f"{weights}: module 'q_proj': ia3_l of shape (2, 3, 1, 1) is not (n, 1) or (1, n) "
        "(IA3 on convolutions is not supported)",
    )


# ---- PEFT's own merge at a real width -----------------------------------------------------


class _Wide(torch.nn.Module):
    """Four attention-sized projections (BERT-small width)."""

    def __init__(self) -> None:
        super().__init__()
        self.projections = torch.nn.ModuleList(torch.nn.Linear(384, 384) for _ in range(4))

    def forward(self, x):
        for p in self.projections:
            x = p(x)
        return x


@pytest.mark.parametrize(
    "rank",
    [
        8,
        16,
        64,
        128,
    ],
)
def test_peft_merge_at_real_width_is_within_the_recorded_slack(rank, tmp_path, write, load):
    torch.manual_seed(0)
    model = _Wide()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(
            model, _lora(target_modules=["0", "1", "2", "3"], r=rank, lora_alpha=2 * rank)
        )
        wrapped.save_pretrained(str(tmp_path / "adapter"))
        merged = {k: v.detach().clone() for k, v in wrapped.merge_and_unload().state_dict().items()}

    refused = []
    for name, update in sorted(read_adapter(tmp_path / "adapter").items()):
        before = _raw(base[name])
        record = update.records(before.shape, write, tolerance=1.0)[0]
        kind = get_update_type("low-rank")
        ours = kind.apply(before, record, load)
        if not within(_raw(merged[name]), ours, kind.slack(before, record, load)):
            refused.append(name)
    assert refused == []
