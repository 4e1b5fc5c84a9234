"""Diff and ls-files see through update chains: values are the rebuilt tensors'."""

from __future__ import annotations

import json

import numpy as np
from peft import LoraConfig

from testing.model_repo import ModelRepo
from testing.peft_models import make_adapter, save


def test_diff_of_a_lora_commit_reports_the_rebuilt_change(model_repo: ModelRepo, tmp_path):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False)
    adapted = make_adapter(tmp_path / "adapter", config)
    model_repo.commit_model(adapted.base, "base")
    save(model_repo.path, adapted.merged)
    model_repo.add_update(adapted.adapter)
    model_repo.git("commit", "-q", "-m", "lora")

    out = model_repo.theta("diff", "HEAD~1", "HEAD", "--format", "json").stdout
    (file,) = json.loads(out)["files"]
    (param,) = file["params"]
    assert param["name"] == "q_proj.weight" and param["status"] == "modified"
    assert param["update_type"] == "low-rank"
    # The update adds its two factors (16x4, 4x16 float32), not another 16x16 base object.
    assert param["added_bytes"] < param["stored_bytes"] - param["old_stored_bytes"] + 400
    assert param["added_bytes"] < 2 * 4 * 16 * 4 + 400
    old = adapted.base["q_proj.weight"].double().numpy()
    new = adapted.merged["q_proj.weight"].double().numpy()
    assert np.isclose(param["delta_l2"], np.linalg.norm(new - old), rtol=1e-5)
    assert np.isclose(
        param["relative_change"], np.linalg.norm(new - old) / np.linalg.norm(old), rtol=1e-5
    )

    listing = model_repo.theta("ls-files", "--params").stdout.decode()
    (line,) = [row for row in listing.splitlines() if "q_proj.weight" in row]
    assert line.rstrip().split("\t")[4] == "low-rank"
