"""A model saved by transformers' own `save_pretrained` as 4 shards and an index, versioned
with real git: a re-save that moves tensors between shards is reported as moved, two
branches that changed different layers merge, and the result loads with `from_pretrained`
as one model. The model is built from a tiny config on this machine (no hub)."""

from __future__ import annotations

import json

import pytest

from testing.sharded import INDEX

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

# Both sizes give 4 shards; between them 5 tensors change shards (transformers 4.40-5.x).
SHARD_SIZE, RESHARDED = "25KB", "22KB"


def _model():
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=99,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config)


def _save(gitenv, repo, model, size, message):
    model.save_pretrained(repo, max_shard_size=size)
    gitenv.git("add", "-A", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", message, cwd=repo)
    return json.loads((repo / INDEX).read_text())["weight_map"]


def test_save_pretrained_shards_move_merge_and_load_as_one_model(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors", "*.safetensors.index.json"))
    model = _model()
    base_map = _save(gitenv, repo, model, SHARD_SIZE, "model")
    assert len(set(base_map.values())) == 4

    gitenv.git("checkout", "-q", "-b", "a", cwd=repo)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight += 1
    embedding = model.embeddings.word_embeddings.weight.detach().clone()
    _save(gitenv, repo, model, SHARD_SIZE, "a: embedding")

    gitenv.git("checkout", "-q", "-b", "b", "main", cwd=repo)
    model = _model()
    with torch.no_grad():
        model.pooler.dense.weight *= 2
    b_map = _save(gitenv, repo, model, RESHARDED, "b: pooler, saved with smaller shards")
    moved = sorted(n for n in base_map if base_map[n] != b_map[n])
    assert len(moved) == 5

    out = gitenv.theta("diff", "main", "b", cwd=repo).stdout.decode()
    summary = next(line for line in out.splitlines() if line.startswith("model-*-of-*"))
    assert summary.startswith("model-*-of-*.safetensors: 1 modified, 5 moved,"), summary
    reported = sorted(line.split()[1] for line in out.splitlines() if line.split()[:1] == ["moved"])
    assert reported == moved

    gitenv.git("merge", "-q", "--no-edit", "a", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    merged = transformers.BertModel.from_pretrained(repo)
    expected = model.state_dict()
    expected["embeddings.word_embeddings.weight"] = embedding
    loaded = merged.state_dict()
    assert loaded.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0, msg=name)
    index = json.loads((repo / INDEX).read_text())
    assert index["weight_map"] == b_map
    assert index["metadata"]["total_size"] == sum(
        v.numel() * v.element_size() for v in expected.values()
    )
    assert index["metadata"]["total_parameters"] == sum(v.numel() for v in expected.values())
    assert gitenv.theta("check", "HEAD~1..HEAD", cwd=repo).returncode == 0
