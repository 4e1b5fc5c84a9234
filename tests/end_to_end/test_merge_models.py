"""`git theta merge-models`: a soup of several branches, files and revisions mixed."""

from __future__ import annotations

import numpy as np

from testing.checkpoints import write_safetensors
from tests.end_to_end.test_merge import F32, Branches, edited, read_safetensors


def test_soup_of_three_branches_against_a_base_revision(gitenv):
    b = Branches(gitenv, F32)
    versions = {
        "one": edited(a=F32["a"] + 3, b=F32["b"] + 1),
        "two": edited(a=F32["a"] + 6),
        "three": edited(a=F32["a"] - 3, c=None),
    }
    for branch, params in versions.items():
        b.git("checkout", "-q", "-b", branch, "main")
        b.commit(branch, params)
    b.git("checkout", "-q", "main")
    proc = b.env.theta(
        "merge-models",
        "--strategy",
        "average",
        "--base",
        "main",
        "-o",
        "model.safetensors",
        "one",
        "two",
        "three",
        cwd=b.repo,
    )
    assert proc.stdout == b"merged 3 models with average into model.safetensors\n"
    got = b.tensors()
    np.testing.assert_allclose(got["a"], F32["a"] + 2, rtol=1e-6)  # (3 + 6 - 3) / 3
    np.testing.assert_array_equal(got["b"], F32["b"] + 1)  # changed by one only: taken
    assert "c" not in got  # deleted by one only: deleted


def test_files_and_rev_paths_mix_and_weights_follow_the_models(gitenv):
    b = Branches(gitenv, F32)
    b.git("checkout", "-q", "-b", "one")
    b.commit("one", edited(a=F32["a"] + 4))
    b.git("checkout", "-q", "main")
    write_safetensors(
        b.repo / "x.safetensors", {n: ("F32", v) for n, v in edited(a=F32["a"] + 8).items()}
    )
    b.env.theta(
        "merge-models",
        "-s",
        "task-arithmetic",
        "--option",
        "weights=0.5,0.25",
        "--base",
        "main:model.safetensors",
        "-o",
        "out.safetensors",
        "one:model.safetensors",
        "x.safetensors",
        cwd=b.repo,
    )
    got = read_safetensors(b.repo / "out.safetensors")
    np.testing.assert_allclose(got["a"], F32["a"] + 4, rtol=1e-6)  # 0.5*4 + 0.25*8


def test_bad_model_argument_is_a_one_line_error(gitenv):
    b = Branches(gitenv, F32)
    proc = b.env.theta(
        "merge-models",
        "-s",
        "average",
        "-o",
        "model.safetensors",
        "main",
        "nope",
        cwd=b.repo,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        b"git-theta: error: nope is neither a file nor a revision holding model.safetensors\n"
    )
    proc = b.env.theta(
        "merge-models", "-s", "average", "-o", "o.safetensors", "main", cwd=b.repo, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr == b"git-theta: error: merge-models needs at least 2 models, got 1\n"
