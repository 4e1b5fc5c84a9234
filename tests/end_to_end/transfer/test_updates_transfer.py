"""Update chains travel like any object: push sends only the update's objects, a fresh clone
rebuilds the merged weights."""

from __future__ import annotations

import numpy as np
from peft import LoraConfig

from testing.gitenv import store_objects
from testing.model_repo import ModelRepo
from testing.peft_models import load, make_adapter, save


def test_sparse_update_push_sends_only_its_objects_and_clone_rebuilds(scratch, origin):
    origin.connect(scratch.repo)
    scratch.commit("v1")
    scratch.git("push", "-q", "-u", "origin", "main")
    before = origin.stored()

    params = dict(scratch.params)
    dtype, array = params["layers.0.attn.weight"]
    flat = array.reshape(-1).copy()
    flat[::97] += np.float32(0.25)
    params["layers.0.attn.weight"] = (dtype, flat.reshape(array.shape))
    v2 = scratch.write(params)
    scratch.env.theta("add", "model.safetensors", "--update-type", "sparse", cwd=scratch.repo)
    scratch.git("commit", "-q", "-m", "sparse")
    scratch.git("push", "-q")
    assert len(origin.stored() - before) == 2  # indices and values

    clone = origin.clone("clone")
    assert (clone / "model.safetensors").read_bytes() == v2
    assert store_objects(clone) == origin.stored()
    assert scratch.env.git("status", "--porcelain", cwd=clone) == ""


def test_lora_commit_pushes_factors_and_clone_checks_out_merged(gitenv, origin, tmp_path):
    model_repo = ModelRepo(gitenv)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False)
    adapted = make_adapter(tmp_path / "adapter", config)
    origin.connect(model_repo.repo)
    model_repo.commit_model(adapted.base, "base")
    model_repo.git("push", "-q", "-u", "origin", "main")
    before = origin.stored()
    save(model_repo.path, adapted.merged)
    model_repo.add_update(adapted.adapter)
    model_repo.git("commit", "-q", "-m", "lora")
    model_repo.git("push", "-q")
    assert len(origin.stored() - before) == 2  # lora_A and lora_B

    clone = origin.clone("clone")
    ours = load(model_repo.path)
    theirs = load(clone / "model.safetensors")
    assert all(np.array_equal(ours[k].numpy(), theirs[k].numpy()) for k in ours)
    assert gitenv.git("status", "--porcelain", cwd=clone) == ""
