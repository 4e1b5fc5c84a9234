from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from testing.checkpoints import random_params, write_safetensors
from testing.fault_proxy import FaultProxy
from testing.gitenv import GitEnv
from testing.lfs_server import LfsServer, giftless_python

SHAPES = {
    "embed.weight": ("F32", (64, 32)),
    "layers.0.attn.weight": ("F32", (32, 32)),
    "layers.0.attn.bias": ("F16", (32,)),
    "layers.0.mlp.weight": ("BF16", (32, 64)),
    "layers.1.attn.weight": ("F32", (32, 32)),
    "norm.scale": ("F32", (32,)),
    "step": ("I64", ()),
}


class Scratch:
    """A repository with `model.safetensors` tracked, and helpers to edit and inspect it."""

    def __init__(self, env: GitEnv) -> None:
        self.env = env
        self.repo = env.init_repo(track=("*.safetensors",))
        self.path = self.repo / "model.safetensors"
        self.params = random_params(SHAPES)

    def git(self, *args: str, check: bool = True) -> str:
        return self.env.git(*args, cwd=self.repo, check=check)

    def write(self, params=None) -> bytes:
        if params is not None:
            self.params = params
        return write_safetensors(self.path, self.params, metadata={"format": "pt"})

    def commit(self, message: str, params=None) -> bytes:
        data = self.write(params)
        self.git("add", "model.safetensors")
        self.git("commit", "-q", "-m", message)
        return data

    def edited(self, *names: str, delta: float = 1.0) -> dict[str, tuple[str, np.ndarray]]:
        out = dict(self.params)
        for name in names:
            dtype, array = out[name]
            out[name] = (dtype, (array + np.asarray(delta, dtype=array.dtype)).astype(array.dtype))
        return out


@pytest.fixture
def scratch(gitenv: GitEnv) -> Scratch:
    return Scratch(gitenv)


@pytest.fixture
def repo_with_model(tmp_path: Path, gitenv: GitEnv) -> tuple[GitEnv, Path]:
    repo = gitenv.init_repo(track=("*.safetensors",))
    write_safetensors(repo / "model.safetensors", random_params(SHAPES))
    return gitenv, repo


@pytest.fixture(scope="session")
def giftless(tmp_path_factory: pytest.TempPathFactory):
    """One real Git LFS server (giftless on 127.0.0.1) for the session; each test uses its
    own `org/<test>` repository on it."""
    if giftless_python() is None:
        if os.environ.get("CI"):
            pytest.fail("giftless is not installed: scripts/install-lfs-server.sh must run in CI")
        pytest.skip("giftless is not installed: run scripts/install-lfs-server.sh")
    server = LfsServer(tmp_path_factory.mktemp("giftless") / "storage")
    yield server
    server.stop()


@pytest.fixture
def proxy(giftless: LfsServer):
    """A fault-injecting proxy (testing/fault_proxy.py) in front of `giftless`."""
    p = FaultProxy(giftless.port)
    yield p
    p.stop()
