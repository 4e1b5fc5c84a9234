"""`git theta merge-models --strategy S [--base REV] -o OUT MODEL...`: merge any number of
checkpoints (a model soup of several branches) outside `git merge`.

Each MODEL (and the base) is a checkpoint file, `REV:PATH`, or a bare revision meaning OUT's
path in that revision. With a base, the N-way rules of merges/three_way.py apply: a parameter
that every model changing it changed the same way is taken as is; others go to the strategy
with every model's version (an unchanged model contributes the base's values). Without a base,
parameters that differ go to the strategy, and strategies that need a base leave them.
Tensors go through the repository's object store, so the command runs inside a repository.
The work is `Repository.merge` (git_theta/api.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from git_theta.api import Repository
from git_theta.api.merging import MIN_MODELS
from git_theta.errors import ConfigError

__all__ = ["merge_models"]


def merge_models(
    models: Sequence[str],
    *,
    output: str,
    base: str | None,
    strategy: str,
    options: Sequence[str] = (),
    params: Sequence[str] = (),
    out: TextIO,
) -> int:
    """Write the merge of `models` (the first is "ours", the last "theirs") to `output`.

    Raises:
        ConfigError: fewer than two models, or a bad strategy or option.
        MergeError: a model is neither a file nor a revision holding the checkpoint; conflicts
            remain that the strategy cannot resolve; sides disagree in shape or dtype.
        CheckpointError: an input is not a checkpoint git-theta reads.
    """
    if len(models) < MIN_MODELS:
        raise ConfigError(f"merge-models needs at least {MIN_MODELS} models, got {len(models)}")
    with Repository() as repo:
        repo.merge(
            models, strategy=strategy, output=output, base=base, options=options, params=params
        )
    out.write(f"merged {len(models)} models with {strategy} into {output}\n")
    return 0
