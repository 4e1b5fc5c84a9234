"""A Git LFS repository with history, as `git theta migrate import` finds it."""

from __future__ import annotations

import numpy as np
import pytest

from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv
from testing.lfs_history import commit_all, init_lfs_repo


def _params(seed: int, base=None):
    rng = np.random.default_rng(seed)
    params = dict(base or {})
    params[f"layer.{seed % 3}.weight"] = ("F32", rng.standard_normal((32, 16)).astype("<f4"))
    params.setdefault("embed.weight", ("F32", np.ones((64, 16), "<f4")))
    return params


@pytest.fixture
def lfs_repo(gitenv: GitEnv):
    """`main` v0, v1, v2 and `side` (from v1) v3, v4, each a commit of `model.safetensors` on
    Git LFS; returns the repository and {commit: the checkpoint's bytes}."""
    repo = init_lfs_repo(gitenv, "lfsrepo", "*.safetensors")
    versions: dict[str, bytes] = {}
    params: dict = {}

    def commit(seed: int) -> None:
        nonlocal params
        params = _params(seed, params)
        data = write_safetensors(repo / "model.safetensors", params)
        versions[commit_all(gitenv, repo, f"v{seed}")] = data

    for seed in (0, 1, 2):
        commit(seed)
    gitenv.git("checkout", "-q", "-b", "side", "HEAD~1", cwd=repo)
    params = {}
    commit(3)
    commit(4)
    gitenv.git("checkout", "-q", "main", cwd=repo)
    return repo, versions
