"""The two functions of git-theta 0.2's API, with their signatures, over `Repository`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.api.repository import Repository
from git_theta.api.saving import format_for
from git_theta.errors import CheckpointError
from git_theta.frameworks import Framework

__all__ = ["load_from_git", "save_to_git"]


def save_to_git(
    state_dict: Mapping[str, Any],
    path: str,
    commit_msg: str,
    tag: str | None = None,
    checkpoint_type: str | None = None,
    checkout: bool = False,
) -> str:
    """Commit `state_dict` as the tracked checkpoint `path` of the repository around the
    current directory; returns the commit id (0.2 returned a GitPython commit).

    `checkpoint_type` names the format (0.2's names `pytorch` and `safetensors` are ours
    too); by default it follows the path's earlier versions, its attributes, or its suffix.
    """
    with Repository() as repo:
        if checkpoint_type is not None:
            _check_type(checkpoint_type, format_for(repo._repo, repo._relative(path)).name, path)
        return repo.save(state_dict, path, message=commit_msg, tag=tag, checkout=checkout)


def load_from_git(
    sha_or_tag: str,
    path: str,
    checkpoint_type: str | None = None,
    checkout: bool = False,
) -> dict[str, Any]:
    """The checkpoint `path` at commit or tag `sha_or_tag` as a dict: torch tensors for a
    PyTorch checkpoint (as 0.2 returned), numpy arrays otherwise. With `checkout`, that
    revision is also checked out (`git checkout`), as in 0.2.
    """
    with Repository() as repo:
        meta = repo.metadata(path, sha_or_tag)
        if checkpoint_type is not None:
            _check_type(checkpoint_type, meta.format, path)
        framework: Framework = "torch" if meta.format == "pytorch" else "numpy"
        weights = repo.load(path, sha_or_tag, framework=framework).to_dict()
        if checkout:
            repo._repo.git("checkout", "-q", sha_or_tag)
        return weights


def _check_type(checkpoint_type: str, actual: str, path: str) -> None:
    if checkpoint_type != actual:
        raise CheckpointError(
            f"{path}: checkpoint_type {checkpoint_type!r} was asked, but the checkpoint is {actual}"
        )
