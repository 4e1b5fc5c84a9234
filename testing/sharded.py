"""Hugging Face-style sharded checkpoints for tests: safetensors shards plus the index, in the
layout transformers' `save_pretrained` writes (`model-0000k-of-0000n.safetensors`, the index as
`json.dumps(indent=2, sort_keys=True)` and a newline)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from testing.checkpoints import write_safetensors

INDEX = "model.safetensors.index.json"

Params = dict[str, tuple[str, np.ndarray]]


def shard_name(k: int, n: int) -> str:
    return f"model-{k:05d}-of-{n:05d}.safetensors"


def write_sharded(folder: Path, params: Params, groups: Sequence[Sequence[str]]) -> dict:
    """Write `params` as one shard per group of names (in order) and the index; returns the
    index document."""
    weight_map: dict[str, str] = {}
    total = 0
    for k, names in enumerate(groups, start=1):
        shard = shard_name(k, len(groups))
        write_safetensors(folder / shard, {n: params[n] for n in names}, metadata={"format": "pt"})
        for name in names:
            weight_map[name] = shard
            total += params[name][1].nbytes
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


def tiny_layers(n_layers: int = 4, seed: int = 0) -> Params:
    """An embedding, `n_layers` layers of two tensors, and a head."""
    rng = np.random.default_rng(seed)
    params: Params = {"embed.weight": ("F32", rng.standard_normal((16, 8)).astype("<f4"))}
    for i in range(n_layers):
        params[f"layers.{i}.weight"] = ("F32", rng.standard_normal((8, 8)).astype("<f4"))
        params[f"layers.{i}.bias"] = ("F32", rng.standard_normal(8).astype("<f4"))
    params["head.weight"] = ("F32", rng.standard_normal((4, 8)).astype("<f4"))
    return params


def four_shards(params: Params) -> list[list[str]]:
    """Embedding + layer 0, layer 1, layer 2, layer 3 + head."""
    names = list(params)
    return [names[:3], names[3:5], names[5:7], names[7:]]


def load_sharded(folder: Path) -> dict[str, np.ndarray]:
    """The model as transformers loads it: every shard the index names, merged by name."""
    from safetensors.numpy import load_file

    index = json.loads((folder / INDEX).read_text())
    out: dict[str, np.ndarray] = {}
    for shard in dict.fromkeys(index["weight_map"].values()):
        out.update(load_file(folder / shard))
    assert set(out) == set(index["weight_map"])
    return out
