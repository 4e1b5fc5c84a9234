"""`git theta merge-models --strategy S [--base REV] -o OUT MODEL...`: merge any number of
checkpoints (a model soup of several branches) outside `git merge`.

Each MODEL (and the base) is a checkpoint file, `REV:PATH`, or a bare revision meaning OUT's
path in that revision. With a base, the N-way rules of merges/three_way.py apply: a parameter
that every model changing it changed the same way is taken as is; others go to the strategy
with every model's version (an unchanged model contributes the base's values). Without a base,
parameters that differ go to the strategy, and strategies that need a base leave them.
Tensors go through the repository's object store, so the command runs inside a repository.
The work is `Repository.merge` (git_theta/api.py).

With `--select K --similar-to REV`, the models are candidate revisions (default: every local
branch) and the K whose task vectors are most similar to REV's (`git theta similar`) are
merged. With a base and a task-vector strategy one model suffices and every parameter a model
changed is scaled (negation, analogies; git_theta/merges/edits.py). `--stage` stages the
merged metadata itself, so a sum of LoRA updates stays low-rank in the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from git_theta.api import Repository
from git_theta.api.merging import MIN_MODELS
from git_theta.errors import ConfigError
from git_theta.git.repo import Repo
from git_theta.similarity.ranking import Comparison

__all__ = ["merge_models"]


def merge_models(
    models: Sequence[str],
    *,
    output: str,
    base: str | None,
    strategy: str,
    options: Sequence[str] = (),
    params: Sequence[str] = (),
    select: int | None = None,
    similar_to: str = "HEAD",
    stage: bool = False,
    out: TextIO,
) -> int:
    """Write the merge of `models` (the first is "ours", the last "theirs") to `output`.

    Raises:
        ConfigError: fewer than two models, or a bad strategy or option.
        MergeError: a model is neither a file nor a revision holding the checkpoint; conflicts
            remain that the strategy cannot resolve; sides disagree in shape or dtype.
        CheckpointError: an input is not a checkpoint git-theta reads.
    """
    if select is None and base is None and len(models) < MIN_MODELS:
        raise ConfigError(f"merge-models needs at least {MIN_MODELS} models, got {len(models)}")
    if select is not None:
        models, base = _select(models, select, similar_to, base, output, params, out)
    with Repository() as repo:
        if stage:
            from git_theta.api.staging import staged_path

            git = Repo()
            try:
                staged_path(git, output)  # before any work: --stage needs a tracked path
            finally:
                git.close()
        repo.merge(
            models,
            strategy=strategy,
            output=output,
            base=base,
            options=options,
            params=params,
            stage=stage,
        )
    out.write(f"merged {len(models)} models with {strategy} into {output}\n")
    return 0


def _select(
    candidates: Sequence[str],
    k: int,
    target: str,
    base: str | None,
    output: str,
    params: Sequence[str],
    out: TextIO,
) -> tuple[list[str], str]:
    """The `k` candidates most similar to `target`, and the base to merge them on (`base`,
    else the merge base they were compared against)."""
    import os

    from git_theta.commands.similar import similar_revisions
    from git_theta.context import RepoContext

    if k < 1:
        raise ConfigError("--select must be at least 1")
    if any(os.path.isfile(c) or ":" in c for c in candidates):
        raise ConfigError("--select takes revisions (branches, tags, commits), not files")
    with RepoContext(Repo()) as session:
        rel = os.path.relpath(os.path.abspath(output), session.repo.worktree.resolve())
        _, ranked = similar_revisions(
            session, target, to=candidates, base=base, paths=[rel], params=params
        )
        usable = [c for c in ranked if c.cosine is not None]
        if len(usable) < k:
            raise ConfigError(
                f"--select {k}: only {len(usable)} of {len(ranked)} candidates have a task "
                f"vector to compare with {target}'s"
            )
        picked = usable[:k]
        bases = {c.base for c in picked}
        if base is None:
            base = bases.pop() if len(bases) == 1 else _octopus(session.repo, picked)
    shown = ", ".join(f"{c.revision} (cosine {c.cosine:+.4f})" for c in picked)
    out.write(
        f"picked {shown} of {len(ranked)} candidates by task-vector similarity to {target}; "
        f"base {base[:12]}\n"
    )
    return [c.revision for c in picked], base


def _octopus(repo: Repo, picked: Sequence[Comparison]) -> str:
    return repo.git("merge-base", "--octopus", *(c.commit for c in picked)).decode().strip()
