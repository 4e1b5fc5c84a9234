"""Real `git merge` (and cherry-pick) of tracked checkpoints through git-theta's merge driver."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import write_safetensors

F32 = {
    "a": np.arange(6, dtype=np.float32).reshape(2, 3),
    "b": np.ones(4, dtype=np.float32),
    "c": np.full(3, 2.0, dtype=np.float32),
}


def read_safetensors(path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "BF16": "<u2"}[info["dtype"]]
        raw = data[8 + n + start : 8 + n + end]
        out[name] = np.frombuffer(raw, dt).reshape(info["shape"])
    return out


class Branches:
    """main has the base; `ours` (main) and `theirs` (branch) each commit their params."""

    def __init__(self, gitenv, base: dict[str, np.ndarray]) -> None:
        self.env = gitenv
        self.repo = gitenv.init_repo(track=("*.safetensors",))
        self.path = self.repo / "model.safetensors"
        self.commit("base", base)

    def git(self, *args: str, check: bool = True, env=None):
        return self.env.run(["git", *args], cwd=self.repo, check=check, env=env)

    def commit(self, message: str, params: dict[str, np.ndarray]) -> None:
        write_safetensors(self.path, {n: ("F32", v) for n, v in params.items()})
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def diverge(self, ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
        self.git("checkout", "-q", "-b", "theirs")
        self.commit("theirs", theirs)
        self.git("checkout", "-q", "main")
        self.commit("ours", ours)

    def merge(self, *pre: str, env=None):
        return self.git(*pre, "merge", "--no-edit", "theirs", check=False, env=env)

    def tensors(self) -> dict[str, np.ndarray]:
        return read_safetensors(self.path)

    def committed(self) -> md.Metadata:
        blob = self.git("cat-file", "blob", "HEAD:model.safetensors").stdout
        return md.decode(blob)


def edited(**changes: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(F32)
    for k, v in changes.items():
        if v is None:
            out.pop(k)
        else:
            out[k] = v
    return out


@pytest.fixture
def branches(gitenv) -> Branches:
    return Branches(gitenv, F32)


def test_one_sided_changes_merge_cleanly(branches):
    branches.diverge(edited(a=F32["a"] + 1), edited(b=F32["b"] * 3))
    proc = branches.merge()
    assert proc.returncode == 0, proc.stderr
    got = branches.tensors()
    np.testing.assert_array_equal(got["a"], F32["a"] + 1)
    np.testing.assert_array_equal(got["b"], F32["b"] * 3)
    np.testing.assert_array_equal(got["c"], F32["c"])
    assert branches.git("status", "--porcelain").stdout == b""
    assert not [p for p in branches.repo.iterdir() if p.name.startswith(".git-theta")]


def test_same_change_on_both_sides_is_kept(branches):
    same = edited(a=F32["a"] * 2)
    branches.diverge(same, same)
    assert branches.merge().returncode == 0
    np.testing.assert_array_equal(branches.tensors()["a"], F32["a"] * 2)


@pytest.mark.parametrize("how", ["config", "dash-c", "env", "attributes"])
def test_both_changed_merge_with_a_configured_strategy(branches, how):
    branches.diverge(edited(a=F32["a"] + 2), edited(a=F32["a"] + 4, c=F32["c"] - 1))
    pre: tuple[str, ...] = ()
    env = None
    if how == "config":
        branches.git("config", "theta.merge.strategy", "average")
    elif how == "dash-c":
        pre = ("-c", "theta.merge.strategy=average")
    elif how == "env":
        env = {"GIT_THETA_MERGE_STRATEGY": "average"}
    else:
        attrs = branches.repo / ".gitattributes"
        attrs.write_text(attrs.read_text() + "*.safetensors theta-merge=average\n")
    proc = branches.merge(*pre, env=env)
    assert proc.returncode == 0, proc.stderr
    got = branches.tensors()
    np.testing.assert_array_equal(got["a"], F32["a"] + 3)
    np.testing.assert_array_equal(got["c"], F32["c"] - 1)
    assert set(branches.committed().params) == {"a", "b", "c"}


def test_task_arithmetic_with_options_from_env(branches):
    branches.diverge(edited(b=F32["b"] + 1), edited(b=F32["b"] + 2))
    env = {
        "GIT_THETA_MERGE_STRATEGY": "task-arithmetic",
        "GIT_THETA_MERGE_OPTIONS": "lambda=0.5",
    }
    assert branches.merge(env=env).returncode == 0
    np.testing.assert_allclose(branches.tensors()["b"], F32["b"] + 1.5)


def test_added_and_deleted_parameters(branches):
    ours = edited(c=None, d=np.zeros(2, np.float32), e=np.ones(2, np.float32))
    theirs = edited(d=np.zeros(2, np.float32), f=np.full(2, 5.0, np.float32))
    branches.diverge(ours, theirs)
    proc = branches.merge()
    assert proc.returncode == 0, proc.stderr
    got = branches.tensors()
    assert sorted(got) == ["a", "b", "d", "e", "f"]  # c deleted on our side only
    np.testing.assert_array_equal(got["f"], np.full(2, 5.0, np.float32))


def test_both_deleted(branches):
    branches.diverge(edited(c=None), edited(c=None, a=F32["a"] - 1))
    assert branches.merge().returncode == 0
    assert sorted(branches.tensors()) == ["a", "b"]


@pytest.mark.parametrize(
    ("ours", "theirs", "strategy", "described"),
    [
        (
            {"d": np.zeros(2, np.float32)},
            {"d": np.ones(2, np.float32)},
            None,
            "d (added differently on both sides)",
        ),
        (
            {"d": np.zeros(2, np.float32)},
            {"d": np.ones(2, np.float32)},
            "ties",
            "d (added differently on both sides; ties needs a merge base)",
        ),
        (
            {"c": None},
            {"c": F32["c"] + 1},
            "average",
            "c (deleted by us, modified by them; average cannot merge a deletion)",
        ),
    ],
)
def test_add_add_and_modify_delete_conflict(branches, ours, theirs, strategy, described):
    branches.diverge(edited(**ours), edited(**theirs))
    env = {"GIT_THETA_MERGE_STRATEGY": strategy} if strategy else None
    proc = branches.merge(env=env)
    assert proc.returncode == 1
    assert described in proc.stderr.decode()


def test_add_add_averaged_and_modify_delete_taken(branches):
    branches.diverge(
        edited(c=None, d=np.zeros(2, np.float32)), edited(c=F32["c"] + 1, d=np.ones(2, np.float32))
    )
    assert branches.merge(env={"GIT_THETA_MERGE_STRATEGY": "average"}).returncode == 1
    branches.git("merge", "--abort")
    assert branches.merge(env={"GIT_THETA_MERGE_STRATEGY": "take-theirs"}).returncode == 0
    got = branches.tensors()
    np.testing.assert_array_equal(got["c"], F32["c"] + 1)
    np.testing.assert_array_equal(got["d"], np.ones(2, np.float32))


def test_no_strategy_leaves_a_conflict_then_resolve_finishes_it(branches):
    branches.diverge(edited(a=F32["a"] + 2, b=F32["b"] + 1), edited(a=F32["a"] + 4))
    ours_blob = branches.git("cat-file", "blob", "HEAD:model.safetensors").stdout
    proc = branches.merge()
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "git-theta: model.safetensors: conflicting parameters: a (modified on both sides)" in err
    assert "git theta resolve model.safetensors --strategy" in err
    assert "git -c theta.merge.strategy=average merge" in err
    stages = branches.git("ls-files", "-u", "model.safetensors").stdout.decode().split("\n")
    assert [line.split()[2] for line in stages if line] == ["1", "2", "3"]
    assert branches.git("show", ":2:model.safetensors").stdout == ours_blob
    np.testing.assert_array_equal(branches.tensors()["a"], F32["a"] + 2)  # ours in the tree

    done = branches.env.theta(
        "resolve", "model.safetensors", "--strategy", "average", cwd=branches.repo
    )
    assert b"resolved model.safetensors with average" in done.stdout
    assert branches.git("ls-files", "-u").stdout == b""
    got = branches.tensors()
    np.testing.assert_array_equal(got["a"], F32["a"] + 3)
    np.testing.assert_array_equal(got["b"], F32["b"] + 1)
    branches.git("commit", "-q", "--no-edit")
    assert branches.git("status", "--porcelain").stdout == b""


def test_resolve_outside_a_conflict_is_a_one_line_error(branches):
    proc = branches.env.theta(
        "resolve", "model.safetensors", "--strategy", "average", cwd=branches.repo, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        "git-theta: error: model.safetensors has no conflicted versions in the index (ours and "
        "theirs); resolve runs after a `git merge` that stopped on this file\n"
    )


def test_unknown_strategy_lists_the_valid_ones(branches):
    branches.diverge(edited(a=F32["a"] + 2), edited(a=F32["a"] + 4))
    proc = branches.merge("-c", "theta.merge.strategy=nope")
    assert proc.returncode != 0
    assert "unknown merge strategy 'nope' (valid: take-ours, take-theirs" in proc.stderr.decode()


def test_shape_mismatch_names_the_parameter(branches):
    branches.diverge(edited(b=np.ones(5, np.float32)), edited(b=np.ones(6, np.float32)))
    proc = branches.merge("-c", "theta.merge.strategy=average")
    assert proc.returncode != 0
    assert "parameter b is F32[5] on our side and F32[6] on theirs" in proc.stderr.decode()


def test_cherry_pick_conflict_resolved_by_config(branches):
    branches.diverge(edited(a=F32["a"] + 2), edited(a=F32["a"] + 4))
    proc = branches.git(
        "-c", "theta.merge.strategy=take-theirs", "cherry-pick", "theirs", check=False
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(branches.tensors()["a"], F32["a"] + 4)


def test_bf16_merges_and_integers_stay_in_conflict(scratch):
    scratch.commit("base")
    base = dict(scratch.params)
    scratch.git("checkout", "-q", "-b", "theirs")
    theirs = scratch.edited("layers.0.mlp.weight", "step", delta=2)
    scratch.commit("theirs", theirs)
    scratch.git("checkout", "-q", "main")
    scratch.params = base
    scratch.commit("ours", scratch.edited("layers.0.mlp.weight", "step", delta=1))
    proc = scratch.env.run(
        ["git", "-c", "theta.merge.strategy=average", "merge", "--no-edit", "theirs"],
        cwd=scratch.repo,
        check=False,
    )
    assert proc.returncode == 1
    assert "step (modified on both sides; I64 values are not merged numerically" in (
        proc.stderr.decode()
    )
    scratch.env.theta("resolve", "model.safetensors", "-s", "take-theirs", cwd=scratch.repo)
    got = read_safetensors(scratch.path)
    for name in ("step", "layers.0.mlp.weight", "embed.weight"):
        np.testing.assert_array_equal(got[name], theirs[name][1])


def test_resolve_with_param_patterns(branches):
    branches.diverge(edited(a=F32["a"] + 2, b=F32["b"] + 2), edited(a=F32["a"] + 4, b=F32["b"]))
    branches.git("checkout", "-q", "theirs")
    branches.commit("theirs b", edited(a=F32["a"] + 4, b=F32["b"] + 4))
    branches.git("checkout", "-q", "main")
    assert branches.merge().returncode == 1
    partial = branches.env.theta(
        "resolve",
        "model.safetensors",
        "-s",
        "average",
        "--param",
        "a",
        cwd=branches.repo,
        check=False,
    )
    assert partial.returncode == 1
    assert "conflicting parameters: b (modified on both sides)" in partial.stderr.decode()
    branches.env.theta(
        "resolve",
        "model.safetensors",
        "-s",
        "task-arithmetic",
        "-o",
        "lambda=0.5",
        "--param",
        "[ab]",
        cwd=branches.repo,
    )
    got = branches.tensors()
    np.testing.assert_allclose(got["a"], F32["a"] + 3)
    np.testing.assert_allclose(got["b"], F32["b"] + 3)


def test_strategy_precedence_env_then_attribute_then_config(branches, monkeypatch):
    from git_theta.git.repo import Repo
    from git_theta.merges.engine import configured_choice

    for key, value in branches.env.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GIT_THETA_MERGE_STRATEGY", raising=False)
    monkeypatch.delenv("GIT_THETA_MERGE_OPTIONS", raising=False)
    repo = Repo(branches.repo)
    assert configured_choice(repo, "model.safetensors") is None
    branches.git("config", "theta.merge.strategy", "ties")
    branches.git("config", "theta.merge.options", "density=0.5")
    choice = configured_choice(repo, "model.safetensors")
    assert choice.strategy.name == "ties" and choice.options["density"] == 0.5
    attrs = branches.repo / ".gitattributes"
    attrs.write_text(attrs.read_text() + "model.* theta-merge=dare-ties\n")
    assert configured_choice(repo, "model.safetensors").strategy.name == "dare-ties"
    assert configured_choice(repo, "other.safetensors").strategy.name == "ties"
    monkeypatch.setenv("GIT_THETA_MERGE_STRATEGY", "average")
    monkeypatch.setenv("GIT_THETA_MERGE_OPTIONS", "")
    choice = configured_choice(repo, "model.safetensors")
    assert choice.strategy.name == "average" and choice.options["weights"] == ""
    repo.close()


def test_merge_models_merges_files_outside_history(branches):
    base, ours, theirs = (branches.repo / f"{n}.safetensors" for n in ("o", "a", "b"))
    write_safetensors(base, {n: ("F32", v) for n, v in F32.items()})
    write_safetensors(ours, {n: ("F32", v) for n, v in edited(a=F32["a"] + 1).items()})
    write_safetensors(theirs, {n: ("F32", v) for n, v in edited(a=F32["a"] + 3, c=None).items()})
    proc = branches.env.theta(
        "merge-models",
        "-o",
        "out.safetensors",
        "a.safetensors",
        "b.safetensors",
        "--base",
        "o.safetensors",
        "-s",
        "task-arithmetic",
        cwd=branches.repo,
    )
    assert proc.stdout == b"merged 2 models with task-arithmetic into out.safetensors\n"
    got = read_safetensors(branches.repo / "out.safetensors")
    assert sorted(got) == ["a", "b"]
    np.testing.assert_allclose(got["a"], F32["a"] + 4)
