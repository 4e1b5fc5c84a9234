"""Merging checkpoints outside `git merge`, with the engine the merge driver uses."""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from git_theta import metadata as md
from git_theta.clean import Cleaner
from git_theta.context import RepoContext
from git_theta.errors import ConfigError, MergeError
from git_theta.merges.fisher_files import Origin
from git_theta.metadata import Metadata

__all__ = ["MIN_MODELS", "merge_checkpoints"]

MIN_MODELS = 2


def merge_checkpoints(
    ctx: RepoContext,
    models: Sequence[str],
    *,
    strategy: str,
    output: str | os.PathLike[str],
    base: str | None,
    options: Sequence[str],
    params: Sequence[str],
    stage: bool = False,
) -> Path:
    """See `Repository.merge`."""
    from git_theta.merges import split_options
    from git_theta.merges.edits import every_change, takes_task_vectors
    from git_theta.merges.engine import MergeChoice, unresolved_message
    from git_theta.merges.opening import open_merge, write_checkpoint

    choice = MergeChoice.make(strategy, split_options(" ".join(options)), params)
    edit = base is not None and takes_task_vectors(choice.strategy)
    if len(models) < (1 if edit else MIN_MODELS):
        raise ConfigError(f"merging needs at least {MIN_MODELS} models, got {len(models)}")
    target = Path(os.path.abspath(output))
    try:
        default: str | None = target.relative_to(ctx.repo.worktree.resolve()).as_posix()
    except ValueError:
        default = None  # outside the repository: a bare revision names nothing
    cleaner = Cleaner(ctx)
    try:
        inputs = [_read_model(cleaner, m, default) for m in models]
        o = _read_model(cleaner, base, default)[0] if base is not None else None
    finally:
        cleaner.close()
    name = str(output)
    fm = open_merge(ctx, name, o, [meta for meta, _ in inputs], [origin for _, origin in inputs])
    if edit and o is not None:  # task arithmetic scales every task vector (merges/edits.py)
        fm.plan = every_change(fm.plan, o, [meta for meta, _ in inputs])
    result = fm.merge([choice])
    if result.unresolved:
        raise MergeError(unresolved_message(name, result.unresolved, merging=False))
    write_checkpoint(ctx, result.metadata, name, target)
    if stage:
        from git_theta.api.staging import stage_metadata

        stage_metadata(ctx.repo, target, result.metadata)
    return target


def _read_model(cleaner: Cleaner, arg: str, default: str | None) -> tuple[Metadata, Origin]:
    """A merge input: a checkpoint file, `REV:PATH`, or a bare revision of `default`."""
    if os.path.isfile(arg):
        with open(arg, "rb") as f:
            data = cleaner.clean(f, os.path.basename(arg))
        return md.decode(data, source=arg), Origin(arg)
    rev, sep, path = arg.partition(":")
    if not sep:
        if default is None:
            raise MergeError(
                f"{arg} is not a file; a bare revision names the output's path in it, and "
                "the output is outside the repository (use REV:PATH)"
            )
        path = default
    source = f"{rev}:{path}"
    blob = cleaner.ctx.repo.read_blob(source)
    if blob is None:
        raise MergeError(f"{arg} is neither a file nor a revision holding {path}")
    if md.looks_like_metadata(blob[: len(md.MAGIC)]):
        return md.decode(blob, source=source), Origin(path, rev)
    # A checkpoint committed without the filter: read it like a file.
    data = cleaner.clean(io.BytesIO(blob), posixpath.basename(path))
    return md.decode(data, source=source), Origin(path, rev)
