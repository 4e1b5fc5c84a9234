"""Repository: save, load, stage, diff and merge through real git in a scratch repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import git_theta
from git_theta import (
    CheckpointError,
    ConfigError,
    MissingObjectError,
    Repository,
    RevisionError,
)
from testing.checkpoints import read_safetensors
from testing.gitenv import store_objects


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.standard_normal((64, 16)).astype(np.float32),
        "head.weight": rng.standard_normal((4, 16)).astype(np.float16),
        "head.bias": np.arange(4, dtype=np.int64),
    }


def test_save_then_load_gives_the_same_tensors_at_each_revision(api_repo: Path):
    v1 = weights()
    v2 = dict(v1, **{"head.bias": v1["head.bias"] + 1})
    with Repository() as repo:
        first = repo.save(v1, "model.safetensors", message="v1", tag="v1")
        second = repo.save(v2, "model.safetensors", message="v2")
        assert git("rev-parse", "HEAD").strip() == second
        assert git("rev-parse", "v1^{commit}").strip() == first
        assert git("log", "--format=%s", "-2").split() == ["v2", "v1"]
        for rev, expected in (("v1", v1), (second, v2), ("HEAD~1", v1)):
            loaded = repo.load("model.safetensors", rev)
            assert sorted(loaded) == sorted(expected)
            for name, array in expected.items():
                assert loaded[name].dtype == array.dtype
                np.testing.assert_array_equal(loaded[name], array)


def test_only_the_changed_tensor_is_stored_again(api_repo: Path):
    v1 = weights()
    with Repository() as repo:
        repo.save(v1, "model.safetensors", message="v1")
        before = store_objects(api_repo)
        repo.save(dict(v1, **{"head.bias": v1["head.bias"] * 3}), "model.safetensors", message="v2")
        added = store_objects(api_repo) - before
        new_bias = repo.metadata("model.safetensors").params["head.bias"].object.oid
    # The new bias only: the other tensors and the layout (the safetensors header) are reused.
    assert added == {new_bias}


def test_save_commits_only_its_path_and_leaves_staged_changes_staged(api_repo: Path):
    (api_repo / "notes.txt").write_text("draft\n")
    git("add", "notes.txt")
    with Repository() as repo:
        repo.save(weights(), "model.safetensors", message="checkpoint")
    assert git("show", "--name-only", "--format=", "HEAD").split() == ["model.safetensors"]
    assert git("diff", "--cached", "--name-only").split() == ["notes.txt"]


def test_load_is_lazy_it_reads_only_the_parameters_looked_up(api_repo: Path):
    with Repository() as repo:
        repo.save(weights(), "model.safetensors", message="v1")
        meta = repo.metadata("model.safetensors")
    # Take every object but the embedding's away: reading the embedding still works, and
    # only reading another parameter needs its (missing) object.
    embed = meta.params["embed.weight"].object.oid
    for path in (api_repo / ".git" / "theta" / "objects").rglob("*"):
        if path.is_file() and path.name != embed:
            path.unlink()
    with Repository() as repo:
        loaded = repo.load("model.safetensors")
        np.testing.assert_array_equal(loaded["embed.weight"], weights()["embed.weight"])
        with pytest.raises(MissingObjectError, match=r"model.safetensors: .*head.bias"):
            loaded["head.bias"]


def test_loaded_arrays_own_their_memory(api_repo: Path):
    with Repository() as repo:
        repo.save(weights(), "model.safetensors", message="v1")
        first = repo.load("model.safetensors")["embed.weight"]
        first[:] = 0  # writable, and nobody else's
        again = repo.load("model.safetensors")["embed.weight"]
    np.testing.assert_array_equal(again, weights()["embed.weight"])


def test_stage_puts_the_new_version_in_the_index_without_committing(api_repo: Path):
    with Repository() as repo:
        repo.save(weights(), "model.safetensors", message="v1")
        changed = dict(weights(), **{"head.bias": np.zeros(4, dtype=np.int64)})
        repo.stage(changed, "model.safetensors")
        np.testing.assert_array_equal(repo.load("model.safetensors", None)["head.bias"], 0)
        np.testing.assert_array_equal(repo.load("model.safetensors")["head.bias"], np.arange(4))
    assert git("diff", "--cached", "--name-only").split() == ["model.safetensors"]


def test_checkout_writes_the_work_tree_and_leaves_status_clean(api_repo: Path):
    with Repository() as repo:
        repo.save(weights(), "model.safetensors", message="v1", checkout=True)
    on_disk = read_safetensors(api_repo / "model.safetensors")
    for name, array in weights().items():
        np.testing.assert_array_equal(on_disk[name][1], array)
    # The index has the file's stat data (diff-files never refreshes): no Git command had to
    # read the checkpoint back through the clean filter.
    assert git("diff-files", "--name-only", "--", "model.safetensors") == ""
    assert git("status", "--porcelain") == ""


def test_update_type_is_the_same_policy_as_git_theta_add(api_repo: Path):
    v1 = weights()
    v2 = dict(v1)
    v2["embed.weight"] = v1["embed.weight"].copy()
    v2["embed.weight"][3, 5] += 1
    with Repository() as repo:
        repo.save(v1, "model.safetensors", message="v1")
        repo.save(v2, "model.safetensors", message="v2", update_type="sparse")
        info = repo.parameters("model.safetensors")["embed.weight"]
        assert info.update_type == "sparse"
        assert info.stored_bytes < v1["embed.weight"].nbytes
        np.testing.assert_array_equal(
            repo.load("model.safetensors")["embed.weight"], v2["embed.weight"]
        )


def test_diff_returns_the_json_document_of_git_theta_diff(api_repo: Path, gitenv):
    v1 = weights()
    with Repository() as repo:
        repo.save(v1, "model.safetensors", message="v1")
        repo.save(dict(v1, **{"head.bias": v1["head.bias"] + 2}), "model.safetensors", message="v2")
        report = repo.diff("HEAD~1", "HEAD")
    cli = gitenv.theta("diff", "--format", "json", "HEAD~1", "HEAD", cwd=api_repo).stdout
    import json

    assert report == json.loads(cli)
    (file,) = report["files"]
    assert [p["name"] for p in file["params"]] == ["head.bias"]


def test_merge_averages_two_branches_like_merge_models(api_repo: Path):
    v1 = weights()
    with Repository() as repo:
        repo.save(v1, "model.safetensors", message="base")
        git("branch", "other")
        repo.save(
            dict(v1, **{"embed.weight": v1["embed.weight"] + 2}),
            "model.safetensors",
            message="ours",
        )
        git("switch", "-q", "other")
        repo.save(
            dict(v1, **{"embed.weight": v1["embed.weight"] - 2}),
            "model.safetensors",
            message="theirs",
        )
        out = repo.merge(
            ["main:model.safetensors", "other:model.safetensors"],
            strategy="average",
            output="avg.safetensors",
        )
    merged = read_safetensors(out)
    np.testing.assert_allclose(merged["embed.weight"][1], v1["embed.weight"], atol=1e-6)
    np.testing.assert_array_equal(merged["head.bias"][1], v1["head.bias"])


def test_bad_calls_raise_the_documented_errors(api_repo: Path):
    (api_repo / "plain.txt").write_text("x")
    with Repository() as repo:
        with pytest.raises(
            ConfigError,
            match=r"^plain.txt: not tracked by git-theta; run `git theta track plain.txt` first$",
        ):
            repo.save(weights(), "plain.txt", message="x")
        with pytest.raises(CheckpointError, match=r"parameter 'bad': str is not a tensor"):
            repo.save({"bad": "text"}, "model.safetensors", message="x")
        repo.save(weights(), "model.safetensors", message="v1")
        with pytest.raises(RevisionError, match="no-such-tag"):
            repo.load("model.safetensors", "no-such-tag")
        with pytest.raises(ConfigError, match="outside the repository"):
            repo.load("/etc/passwd")
    assert git("log", "--format=%s").split() == ["v1", "track", "checkpoints"]


def test_bf16_needs_torch_in_numpy_and_loads_in_torch(api_repo: Path):
    torch = pytest.importorskip("torch")
    values = torch.randn(8, 8).to(torch.bfloat16)
    with Repository() as repo:
        repo.save({"w": values}, "model.safetensors", message="bf16")
        with pytest.raises(
            CheckpointError,
            match=r"parameter 'w': BF16 has no numpy dtype; load it with framework='torch'",
        ):
            repo.load("model.safetensors")["w"]
        assert torch.equal(repo.load("model.safetensors", framework="torch")["w"], values)


def test_pytorch_checkpoints_keep_nesting_and_non_tensor_values(api_repo: Path):
    torch = pytest.importorskip("torch")
    state = {"model": {"w": torch.randn(3, 3)}, "step": 7, "config": {"lr": 0.1}}
    commit = git_theta.save_to_git(state, "ckpt.pt", "pt checkpoint", checkpoint_type="pytorch")
    loaded = git_theta.load_from_git(commit, "ckpt.pt")
    assert torch.equal(loaded["model/w"], state["model"]["w"])
    with Repository() as repo:
        assert set(repo.parameters("ckpt.pt")) == {"model/w"}


def test_fsck_and_du_report_what_the_cli_reports(api_repo: Path, gitenv):
    import json

    v1 = weights()
    with Repository() as repo:
        repo.save(v1, "model.safetensors", message="v1")
        repo.save(dict(v1, **{"head.bias": v1["head.bias"] + 1}), "model.safetensors", message="v2")
        assert repo.fsck().problems == []
        usage = repo.du()
        assert usage == json.loads(gitenv.theta("du", "--format", "json", cwd=api_repo).stdout)
        oid = repo.metadata("model.safetensors").params["embed.weight"].object.oid
    obj = api_repo / ".git" / "theta" / "objects" / oid[:2] / oid[2:4] / oid
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0xFF
    obj.chmod(0o644)
    obj.write_bytes(bytes(data))
    with Repository() as repo:
        (problem,) = repo.fsck().problems
    assert problem.ref.oid == oid
    assert "model.safetensors: embed.weight" in problem.line()
