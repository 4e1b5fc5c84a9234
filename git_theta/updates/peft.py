"""Hugging Face PEFT adapters (`adapter_config.json` + `adapter_model.safetensors`) as updates.

PEFT's conventions, read from its LoRA and IA3 layers:
- keys are `base_model.model.<module>.<adapter tensor>`; the parameter changed is
  `<module>.weight` of the model's own state dict (and `<module>.bias` for IA3, below);
- LoRA: `lora_A.weight` (r x in) and `lora_B.weight` (out x r); delta = (B @ A) * scale with
  scale = lora_alpha / r, or lora_alpha / sqrt(r) with `use_rslora`; `alpha_pattern` and
  `rank_pattern` override per module by PEFT's pattern match (`(.*\\.)?(<pattern>)$` on the
  module name); `fan_in_fan_out` (GPT-2's Conv1D stores W as in x out) transposes delta. PEFT
  writes the flag once for the whole adapter but applies it only to Conv1D layers, so the
  orientation is taken from the parameter's shape, and for a square one from which orientation
  the file holds (the flag decides when the file holds the base).
  Embeddings: `lora_embedding_A` (r x vocab) and `lora_embedding_B` (dim x r), delta transposed;
- IA3: `ia3_l` of shape (out, 1) scales the rows of W (attention-style targets) and its bias;
  (1, in) (`feedforward_modules`) scales the columns and leaves the bias alone; `fan_in_fan_out`
  transposes the vector.
DoRA, LoRA biases and LoRA on convolutions change weights in other ways; they are refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from git_theta.errors import CheckpointError
from git_theta.tensor import RawTensor
from git_theta.updates.base import Writer
from git_theta.updates.ia3 import ia3_record
from git_theta.updates.low_rank import low_rank_record

__all__ = ["AdapterUpdate", "read_adapter"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."
_LORA_SUFFIXES = {
    ".lora_A.weight": ("a", False),
    ".lora_B.weight": ("b", False),
    ".lora_embedding_A": ("a", True),
    ".lora_embedding_B": ("b", True),
}


@dataclass(frozen=True)
class AdapterUpdate:
    """What an adapter does to one parameter of the checkpoint."""

    kind: str  # "low-rank" or "ia3"
    module: str
    tensors: Mapping[str, RawTensor] = field(default_factory=dict)
    scale: float = 1.0
    transpose: bool | None = False  # None: by the parameter's shape (fan_in_fan_out)
    axis: int = 0
    optional: bool = False  # applied only if the checkpoint has the parameter
    fan_in_fan_out: bool = False  # the adapter's flag: prefer (in, out) for square weights

    def records(
        self, shape: tuple[int, ...], write: Writer, *, tolerance: float
    ) -> list[dict[str, Any]]:
        """The records that fit a parameter of `shape`, most likely first; [] if none does."""
        if self.kind == "ia3":
            vec = self.tensors["vector"]
            if self.axis >= len(shape) or max(vec.shape) != shape[self.axis]:
                return []
            return [ia3_record(write(vec), self.axis, tolerance=tolerance)]
        a, b = self.tensors["a"], self.tensors["b"]
        natural = (b.shape[0], a.shape[1])
        options = [self.transpose] if self.transpose is not None else [False, True]
        if self.transpose is None and self.hint_transpose:
            options.reverse()
        fits = [t for t in options if (natural[::-1] if t else natural) == tuple(shape)]
        return [
            low_rank_record(write(a), write(b), self.scale, transpose=t, tolerance=tolerance)
            for t in fits
        ]

    @property
    def hint_transpose(self) -> bool:
        return self.kind == "low-rank" and self.transpose is None and self.fan_in_fan_out

    def describe_shape(self) -> str:
        if self.kind == "ia3":
            return f"an IA3 vector of shape {list(self.tensors['vector'].shape)}"
        a, b = self.tensors["a"], self.tensors["b"]
        return f"factors B {list(b.shape)} @ A {list(a.shape)}"


def _pattern_key(patterns: Mapping[str, Any], module: str) -> str | None:
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


def _adapter_files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        config, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    else:
        config, weights = path.parent / CONFIG_NAME, path
    for needed in (config, weights):
        if not needed.is_file():
            raise CheckpointError(
                f"{path}: no {needed.name} (a PEFT adapter directory has both "
                f"{CONFIG_NAME} and {WEIGHTS_NAME})"
            )
    return config, weights


def read_adapter(path: Path) -> dict[str, AdapterUpdate]:
    """Parameter name -> update, from a PEFT adapter directory (or its weights file).

    Raises:
        CheckpointError: unreadable, unsupported (DoRA, ...) or inconsistent adapter; the
            message names the adapter and what is wrong.
    """
    config_path, weights_path = _adapter_files(path)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not a readable adapter config: {exc}") from None
    from git_theta.formats import get_format

    tensors = get_format("safetensors").load(weights_path)
    kind = str(config.get("peft_type", "")).upper()
    if kind == "LORA":
        return _lora(config, tensors, str(weights_path))
    if kind == "IA3":
        return _ia3(config, tensors, str(weights_path))
    raise CheckpointError(
        f"{config_path}: peft_type {config.get('peft_type')!r} is not supported "
        "(supported: LORA, IA3); add the merged model as a dense update instead"
    )


def _module_key(key: str, source: str) -> str:
    if not key.startswith(PREFIX):
        raise CheckpointError(f"{source}: tensor {key!r} does not start with {PREFIX!r}")
    return key[len(PREFIX) :]


def _refuse_unsupported_lora(config: Mapping[str, Any], source: str) -> None:
    for flag, what in (("use_dora", "DoRA"), ("lora_bias", "LoRA biases")):
        if config.get(flag):
            raise CheckpointError(
                f"{source}: {what} adapters are not supported (their merge is not a low-rank "
                "update); merge with PEFT and add the result as a dense update"
            )
    if config.get("target_parameters"):
        raise CheckpointError(f"{source}: LoRA on target_parameters is not supported")


def _lora_factors(
    tensors: Mapping[str, RawTensor], source: str
) -> tuple[dict[str, dict[str, RawTensor]], dict[str, bool]]:
    """Each module's factors by role ("a", "b"), and whether the module is an embedding."""
    factors: dict[str, dict[str, RawTensor]] = {}
    embedding: dict[str, bool] = {}
    for key, tensor in tensors.items():
        rest = _module_key(key, source)
        for suffix, (role, is_embedding) in _LORA_SUFFIXES.items():
            if rest.endswith(suffix):
                module = rest[: -len(suffix)]
                factors.setdefault(module, {})[role] = tensor
                embedding[module] = is_embedding
                break
        else:
            if "lora_magnitude_vector" in rest:
                raise CheckpointError(f"{source}: DoRA adapters are not supported")
            # modules_to_save and trainable tokens are whole tensors: the merged checkpoint
            # carries them and they are stored as ordinary changes.
    return factors, embedding


def _lora(
    config: Mapping[str, Any], tensors: Mapping[str, RawTensor], source: str
) -> dict[str, AdapterUpdate]:
    _refuse_unsupported_lora(config, source)
    factors, embedding = _lora_factors(tensors, source)
    r_default = int(config.get("r", 8))
    alpha_default = float(config.get("lora_alpha", r_default))
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    out: dict[str, AdapterUpdate] = {}
    for module, pair in sorted(factors.items()):
        missing = {"a", "b"} - set(pair)
        if missing:
            names = " and ".join(f"lora_{m.upper()}" for m in sorted(missing))
            raise CheckpointError(f"{source}: module {module!r} has no {names} factor")
        a, b = pair["a"], pair["b"]
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise CheckpointError(
                f"{source}: module {module!r}: factors of shapes {b.shape} and {a.shape} are "
                "not matrices (LoRA on convolutions is not supported)"
            )
        rank_key = _pattern_key(rank_pattern, module)
        rank = int(rank_pattern[rank_key]) if rank_key is not None else r_default
        if a.shape[0] != rank or b.shape[1] != rank:
            raise CheckpointError(
                f"{source}: module {module!r}: factor shapes B {b.shape} and A {a.shape} do not "
                f"have the configured rank {rank}"
            )
        alpha_key = _pattern_key(alpha_pattern, module)
        alpha = float(alpha_pattern[alpha_key]) if alpha_key is not None else alpha_default
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        out[f"{module}.weight"] = AdapterUpdate(
            "low-rank",
            module,
            {"a": a, "b": b},
            scale=scale,
            transpose=True if embedding[module] else None,
            fan_in_fan_out=bool(config.get("fan_in_fan_out")),
        )
    if not out:
        raise CheckpointError(f"{source}: the adapter holds no LoRA factors")
    return out


def _ia3(
    config: Mapping[str, Any], tensors: Mapping[str, RawTensor], source: str
) -> dict[str, AdapterUpdate]:
    out: dict[str, AdapterUpdate] = {}
    fan_in_fan_out = bool(config.get("fan_in_fan_out"))
    for key, vector in sorted(tensors.items()):
        rest = _module_key(key, source)
        if not rest.endswith(".ia3_l"):
            continue
        module = rest[: -len(".ia3_l")]
        if len(vector.shape) != 2 or 1 not in vector.shape:
            raise CheckpointError(
                f"{source}: module {module!r}: ia3_l of shape {vector.shape} is not (n, 1) or "
                "(1, n) (IA3 on convolutions is not supported)"
            )
        feedforward = vector.shape[0] == 1 and vector.shape[1] != 1
        axis = 1 if feedforward else 0
        if fan_in_fan_out:
            axis = 1 - axis
        out[f"{module}.weight"] = AdapterUpdate("ia3", module, {"vector": vector}, axis=axis)
        if not feedforward:
            # PEFT scales the bias of an attention-style target by the same vector; applied
            # only if the checkpoint has that bias.
            out[f"{module}.bias"] = AdapterUpdate(
                "ia3", module, {"vector": vector}, axis=0, optional=True
            )
    if not out:
        raise CheckpointError(f"{source}: the adapter holds no IA3 vectors")
    return out
