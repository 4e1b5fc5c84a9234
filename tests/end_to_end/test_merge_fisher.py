"""The fisher strategy through real git: Fisher files committed beside the checkpoint (tracked
by git-theta), named by option, read after a stopped cherry-pick, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from testing.checkpoints import write_safetensors
from tests.end_to_end.test_merge import F32, Branches, edited

FISHER = "model.fisher.safetensors"
rng = np.random.default_rng(5)
F_OURS = {n: rng.random(v.shape).astype(np.float32) for n, v in F32.items()}
F_THEIRS = {n: rng.random(v.shape).astype(np.float32) for n, v in F32.items()}
OURS = edited(a=F32["a"] + 2, b=F32["b"] * 5)
THEIRS = edited(a=F32["a"] - 4, b=F32["b"] * -1)


def expected(name: str) -> np.ndarray:
    fo, ft = F_OURS[name].astype(np.float64), F_THEIRS[name].astype(np.float64)
    return (fo * OURS[name] + ft * THEIRS[name]) / (fo + ft)


def write_fisher(branches: Branches, tensors: dict[str, np.ndarray], name: str = FISHER) -> None:
    write_safetensors(branches.repo / name, {n: ("F32", v) for n, v in tensors.items()})


@pytest.fixture
def fisher_branches(gitenv) -> Branches:
    """ours and theirs each commit their checkpoint and their Fisher file (tracked: it matches
    *.safetensors, so git holds metadata and the tensors sit in the object store)."""
    b = Branches(gitenv, F32)
    attrs = b.repo / ".gitattributes"
    # The Fisher files themselves merge by plain averaging, not by Fisher files of their own.
    attrs.write_text(attrs.read_text() + "*.fisher.safetensors theta-merge=average\n")
    b.git("commit", "-qam", "fisher files average")
    b.git("checkout", "-q", "-b", "theirs")
    write_fisher(b, F_THEIRS)
    b.commit("theirs", THEIRS)
    b.git("checkout", "-q", "main")
    write_fisher(b, F_OURS)
    b.commit("ours", OURS)
    return b


def test_git_merge_weights_by_the_committed_fisher_files(fisher_branches):
    proc = fisher_branches.merge("-c", "theta.merge.strategy=fisher")
    assert proc.returncode == 0, proc.stderr
    got = fisher_branches.tensors()
    for name in ("a", "b"):
        np.testing.assert_allclose(got[name], expected(name), rtol=1e-6)
    np.testing.assert_array_equal(got["c"], F32["c"])


def test_cherry_pick_stops_then_resolve_reads_cherry_pick_head(fisher_branches):
    proc = fisher_branches.git(
        "-c", "theta.merge.strategy=fisher", "cherry-pick", "theirs", check=False
    )
    assert proc.returncode != 0
    assert "git does not tell a merge driver which commit theirs is" in proc.stderr.decode()
    fisher_branches.env.theta(
        "resolve", "model.safetensors", "-s", "fisher", cwd=fisher_branches.repo
    )
    np.testing.assert_allclose(fisher_branches.tensors()["a"], expected("a"), rtol=1e-6)


def test_fisher_files_named_by_option(gitenv):
    b = Branches(gitenv, F32)
    b.diverge(OURS, THEIRS)
    write_fisher(b, F_OURS, "fo.safetensors")
    write_fisher(b, F_THEIRS, "ft.safetensors")
    env = {
        "GIT_THETA_MERGE_STRATEGY": "fisher",
        "GIT_THETA_MERGE_OPTIONS": "fisher=fo.safetensors,ft.safetensors",
    }
    proc = b.merge(env=env)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(b.tensors()["b"], expected("b"), rtol=1e-6)


def test_missing_fisher_tensor_and_file_are_one_line_errors(gitenv):
    b = Branches(gitenv, F32)
    b.diverge(OURS, THEIRS)
    ours_tree = b.path.read_bytes()
    proc = b.merge("-c", "theta.merge.strategy=fisher")
    assert proc.returncode != 0
    assert (
        "git-theta: error: HEAD:model.fisher.safetensors: no Fisher file for model.safetensors "
        "in HEAD; commit it there or name the files with the option fisher=OURS,THEIRS\n"
    ) in proc.stderr.decode()
    assert b.path.read_bytes() == ours_tree  # nothing written
    b.git("merge", "--abort")

    write_fisher(b, {"a": F_OURS["a"], "b": F_OURS["b"]}, "fo.safetensors")
    write_fisher(b, {"a": F_THEIRS["a"], "b": np.ones(7, np.float32)}, "ft.safetensors")
    env = {"GIT_THETA_MERGE_OPTIONS": "fisher=fo.safetensors,ft.safetensors"}
    proc = b.merge("-c", "theta.merge.strategy=fisher", env=env)
    assert proc.returncode != 0
    assert (
        "git-theta: error: ft.safetensors: Fisher tensor for parameter b is [7], "
        "the parameter is [4]\n"
    ) in proc.stderr.decode()


def test_rebase_reads_theirs_from_the_commit_being_picked(fisher_branches):
    fisher_branches.git("checkout", "-q", "theirs")
    proc = fisher_branches.git("-c", "theta.merge.strategy=fisher", "rebase", "main", check=False)
    assert proc.returncode == 0, proc.stderr
    got = fisher_branches.tensors()
    for name in ("a", "b"):  # equal weights: the formula is symmetric in the sides
        np.testing.assert_allclose(got[name], expected(name), rtol=1e-6)
