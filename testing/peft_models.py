"""Real PEFT adapters on a tiny torch model, made the way users make them.

`init_lora_weights=False` / `init_ia3_weights=False` give adapters whose update is not zero,
standing in for trained ones. Everything is seeded, so a test sees the same tensors each run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn


class Tiny(nn.Module):
    """Attention-like projections, a feed-forward pair, an embedding and a GPT-2 style Conv1D."""

    def __init__(self) -> None:
        super().__init__()
        from transformers.pytorch_utils import Conv1D

        self.embed = nn.Embedding(40, 16)
        self.q_proj = nn.Linear(16, 16)
        self.v_proj = nn.Linear(16, 16)
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 16)
        self.c_attn = Conv1D(24, 16)  # weight stored (in, out)
        self.norm = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = self.q_proj(h) + self.v_proj(h)
        h = self.down(torch.relu(self.up(h)))
        return self.norm(h + self.c_attn(h)[..., :16])


@dataclass
class Adapted:
    base: dict[str, torch.Tensor]
    merged: dict[str, torch.Tensor]
    adapter: Path


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}


def make_adapter(
    directory: Path,
    config: Any,
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    base: dict[str, torch.Tensor] | None = None,
) -> Adapted:
    """Wrap Tiny (with `base`'s weights if given) in `config`, save the adapter to `directory`
    and return the base weights and PEFT's own `merge_and_unload()` weights."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    model = Tiny().to(dtype)
    if base is not None:
        model.load_state_dict(base)
    start = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(str(directory))
        merged = _state(peft_model.merge_and_unload())
    return Adapted(start, merged, directory)


def save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(tensors, str(path))


def load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
