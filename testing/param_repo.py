"""A scratch repository tracking `model.safetensors` built from named random tensors, for the
update-policy tests (no torch: testing/model_repo.py is the PEFT-model one)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import numpy as np

from testing.checkpoints import random_params, read_safetensors, write_safetensors
from testing.gitenv import GitEnv

__all__ = ["ParamRepo"]


class ParamRepo:
    """`model.safetensors` tracked in a fresh repository, its tensors drawn for `shapes`."""

    def __init__(self, env: GitEnv, shapes: dict[str, tuple[str, tuple[int, ...]]]) -> None:
        self.env = env
        self.repo = env.init_repo(track=("*.safetensors",))
        self.path = self.repo / "model.safetensors"
        self.params = random_params(shapes)

    def git(self, *args: str, check: bool = True) -> str:
        return self.env.git(*args, cwd=self.repo, check=check)

    def theta(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return self.env.theta(*args, cwd=self.repo, check=check)

    def write(self, params: Any = None) -> None:
        if params is not None:
            self.params = params
        write_safetensors(self.path, self.params)

    def commit(self, message: str, params: Any = None, *add_args: str) -> None:
        """Write the checkpoint, add it (`git theta add ADD_ARGS` when given) and commit."""
        self.write(params)
        if add_args:
            self.theta("add", "model.safetensors", *add_args)
        else:
            self.git("add", "model.safetensors")
        self.git("commit", "-q", "-m", message)

    def meta(self, rev: str = "HEAD") -> dict[str, Any]:
        """Every parameter entry of the committed metadata, as JSON."""
        return json.loads(self.git("cat-file", "-p", f"{rev}:model.safetensors"))["params"]

    def entry(self, name: str, rev: str = "HEAD") -> dict[str, Any]:
        return self.meta(rev)[name]

    def read(self) -> dict[str, tuple[str, np.ndarray]]:
        return read_safetensors(self.path)

    def fresh_checkout(self) -> dict[str, tuple[str, np.ndarray]]:
        """The checkpoint as a checkout writes it anew (and `git status` clean after)."""
        self.path.unlink()
        self.git("checkout", "--", "model.safetensors")
        assert self.git("status", "--porcelain") == ""
        return self.read()
