"""git-theta 0.2's `save_to_git` / `load_from_git`, as its own in-process end-to-end test used
them: two paths, a changed model under a tag, nothing written to the work tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import git_theta
from git_theta import CheckpointError


def test_the_original_in_process_workflow(api_repo: Path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = {
        "layers.0.hidden.weight": torch.rand(8, 4),
        "layers.0.hidden.bias": torch.rand(8),
        "layers.1.output.weight": torch.rand(2, 8),
    }
    updated = dict(model)
    updated["layers.0.hidden.weight"] = torch.rand(8, 4)

    model_1 = git_theta.save_to_git(model, "model_1.pt", "commit first model")
    model_2 = git_theta.save_to_git(model, "model_2.pt", "commit second model")
    model_1_1 = git_theta.save_to_git(updated, "model_1.pt", "changed model", tag="updated-model")

    assert not (api_repo / "model_1.pt").exists()
    assert not (api_repo / "model_2.pt").exists()
    tags = subprocess.run(["git", "rev-parse", "updated-model"], capture_output=True, text=True)
    assert tags.stdout.strip() == model_1_1

    m1 = git_theta.load_from_git(model_1, "model_1.pt")
    m11 = git_theta.load_from_git("updated-model", "model_1.pt")
    m2 = git_theta.load_from_git(model_2, "model_2.pt")
    for name, tensor in model.items():
        assert torch.equal(m1[name], tensor)
        assert torch.equal(m2[name], tensor)
        assert torch.equal(m11[name], updated[name])
    assert not torch.equal(m11["layers.0.hidden.weight"], m1["layers.0.hidden.weight"])


def test_load_with_checkout_checks_the_revision_out(api_repo: Path):
    torch = pytest.importorskip("torch")
    first = git_theta.save_to_git({"w": torch.ones(3)}, "m.pt", "one", checkout=True)
    git_theta.save_to_git({"w": torch.zeros(3)}, "m.pt", "zero", checkout=True)
    loaded = git_theta.load_from_git(first, "m.pt", checkout=True)
    assert torch.equal(loaded["w"], torch.ones(3))
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.stdout.strip() == first
    assert torch.equal(torch.load(api_repo / "m.pt", weights_only=True)["w"], torch.ones(3))


def test_a_wrong_checkpoint_type_is_one_line(api_repo: Path):
    torch = pytest.importorskip("torch")
    commit = git_theta.save_to_git({"w": torch.ones(3)}, "m.safetensors", "st")
    with pytest.raises(
        CheckpointError,
        match=r"^m.safetensors: checkpoint_type 'pytorch' was asked, but the checkpoint is safetensors$",
    ):
        git_theta.load_from_git(commit, "m.safetensors", checkpoint_type="pytorch")
