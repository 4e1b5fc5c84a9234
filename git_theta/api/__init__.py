"""The public Python API: a repository's tracked checkpoints, read and written from Python.

A training loop commits a checkpoint every N steps, an evaluation loads the model at a tag,
a notebook compares two branches; all through one `Repository`:

    >>> repo = git_theta.Repository(".")
    >>> commit = repo.save(model.state_dict(), "model.safetensors", message="step 1000")
    >>> weights = repo.load("model.safetensors", "v1.0")      # lazy: nothing read yet
    >>> weights["encoder.layer.0.attention.self.query.weight"]  # reads that one tensor
    >>> repo.diff("main", "finetune")                          # the `diff --format json` records

Everything goes through the same pieces as the filter and the drivers: the metadata in Git,
the object store, the update policy, the merge engine. Errors raised are the documented
GitThetaError tree (git_theta/errors.py).
"""

from __future__ import annotations

from git_theta.api.checkpoint import Checkpoint, ParamInfo
from git_theta.api.legacy import load_from_git, save_to_git
from git_theta.api.repository import Repository

__all__ = ["Checkpoint", "ParamInfo", "Repository", "load_from_git", "save_to_git"]
