"""A repository tracking a PEFT-style model, for the update tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from testing.gitenv import GitEnv
from testing.peft_models import load, save


def store_bytes(repo: Path) -> int:
    objects = repo / ".git" / "theta" / "objects"
    return sum(p.stat().st_size for p in objects.rglob("*") if p.is_file())


class ModelRepo:
    """A repo tracking model.safetensors, with helpers for PEFT-style workflows."""

    def __init__(self, env: GitEnv) -> None:
        self.env = env
        self.repo = env.init_repo(track=("*.safetensors",))
        self.path = self.repo / "model.safetensors"

    def git(self, *args: str, check: bool = True) -> str:
        return self.env.git(*args, cwd=self.repo, check=check)

    def theta(self, *args: str, check: bool = True):
        return self.env.theta(*args, cwd=self.repo, check=check)

    def add_update(self, adapter: Path, kind: str = "low-rank", *, check: bool = True):
        """`git theta add model.safetensors --update-type KIND --update-path ADAPTER`."""
        return self.theta(
            "add",
            "model.safetensors",
            "--update-type",
            kind,
            "--update-path",
            str(adapter),
            check=check,
        )

    def commit_model(self, tensors: dict[str, torch.Tensor], message: str) -> None:
        save(self.path, tensors)
        self.git("add", "model.safetensors")
        self.git("commit", "-q", "-m", message)

    def metadata(self, rev: str = ":") -> dict:
        spec = f"{rev}model.safetensors" if rev == ":" else f"{rev}:model.safetensors"
        return json.loads(self.git("cat-file", "-p", spec))

    def checkout_fresh(self) -> dict[str, torch.Tensor]:
        self.path.unlink()
        self.git("checkout", "--", "model.safetensors")
        return load(self.path)

    def clean(self) -> bool:
        return self.git("status", "--porcelain") == ""


def assert_within_one_rounding(ours: torch.Tensor, theirs: torch.Tensor, base: torch.Tensor):
    """PEFT's merge and ours agree to one rounding of the dtype, relative to the magnitudes."""
    eps = torch.finfo(ours.dtype).eps
    a, b = ours.double(), theirs.double()
    bound = eps * (base.double().abs() + (b - base.double()).abs()) + 1e-30
    assert torch.all((a - b).abs() <= bound), float(((a - b).abs() / bound).max())
