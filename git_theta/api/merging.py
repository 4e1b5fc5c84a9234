"""Merging checkpoints outside `git merge`, with the engine the merge driver uses."""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from git_theta import metadata as md
from git_theta.errors import ConfigError, MergeError
from git_theta.filters import FilterSession
from git_theta.merges.fisher_files import Origin
from git_theta.metadata import Metadata

__all__ = ["MIN_MODELS", "merge_checkpoints"]

MIN_MODELS = 2


def merge_checkpoints(
    session: FilterSession,
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
    from git_theta.merges.engine import (
        FileMerge,
        MergeChoice,
        fisher_finder,
        unresolved_message,
        write_checkpoint,
    )

    choice = MergeChoice.make(strategy, split_options(" ".join(options)), params)
    edit = base is not None and takes_task_vectors(choice.strategy)
    if len(models) < (1 if edit else MIN_MODELS):
        raise ConfigError(f"merging needs at least {MIN_MODELS} models, got {len(models)}")
    target = Path(os.path.abspath(output))
    try:
        default: str | None = target.relative_to(session.repo.worktree.resolve()).as_posix()
    except ValueError:
        default = None  # outside the repository: a bare revision names nothing
    inputs = [_read_model(session, m, default) for m in models]
    o = _read_model(session, base, default)[0] if base is not None else None
    name = str(output)
    fm = FileMerge(
        name,
        o,
        [meta for meta, _ in inputs],
        session.store,
        fetch=lambda meta: session.check_objects(meta, name),
        fisher=fisher_finder(session, [origin for _, origin in inputs]),
    )
    if edit and o is not None:  # task arithmetic scales every task vector (merges/edits.py)
        fm.plan = every_change(fm.plan, o, [meta for meta, _ in inputs])
    result = fm.merge([choice])
    if result.unresolved:
        raise MergeError(unresolved_message(name, result.unresolved, merging=False))
    write_checkpoint(session, result.metadata, name, target)
    if stage:
        from git_theta.api.staging import stage_metadata

        stage_metadata(session.repo, target, result.metadata)
    return target


def _read_model(session: FilterSession, arg: str, default: str | None) -> tuple[Metadata, Origin]:
    """A merge input: a checkpoint file, `REV:PATH`, or a bare revision of `default`."""
    if os.path.isfile(arg):
        with open(arg, "rb") as f:
            data = session.clean(f, os.path.basename(arg))
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
    blob = session.repo.read_blob(source)
    if blob is None:
        raise MergeError(f"{arg} is neither a file nor a revision holding {path}")
    if md.looks_like_metadata(blob[: len(md.MAGIC)]):
        return md.decode(blob, source=source), Origin(path, rev)
    # A checkpoint committed without the filter: read it like a file.
    data = session.clean(io.BytesIO(blob), posixpath.basename(path))
    return md.decode(data, source=source), Origin(path, rev)
