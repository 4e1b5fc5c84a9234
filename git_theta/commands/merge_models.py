"""`git theta merge-models --strategy S [--base REV] -o OUT MODEL...`: merge any number of
checkpoints (a model soup of several branches) outside `git merge`.

Each MODEL (and the base) is a checkpoint file, `REV:PATH`, or a bare revision meaning OUT's
path in that revision. With a base, the N-way rules of merges/three_way.py apply: a parameter
that every model changing it changed the same way is taken as is; others go to the strategy
with every model's version (an unchanged model contributes the base's values). Without a base,
parameters that differ go to the strategy, and strategies that need a base leave them.
Tensors go through the repository's object store, so the command runs inside a repository.
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from git_theta import metadata as md
from git_theta.errors import ConfigError, MergeError
from git_theta.filters import FilterSession
from git_theta.git.repo import Repo
from git_theta.merges import split_options
from git_theta.merges.fisher_files import Origin
from git_theta.merging import (
    FileMerge,
    MergeChoice,
    fisher_finder,
    unresolved_message,
    write_checkpoint,
)

__all__ = ["merge_models"]

MIN_MODELS = 2


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
    choice = MergeChoice.make(strategy, split_options(" ".join(options)), params)
    with FilterSession(Repo()) as session:
        default = _repo_path(session.repo, output)
        inputs = [_read_model(session, m, default) for m in models]
        o = _read_model(session, base, default)[0] if base is not None else None
        fm = FileMerge(
            output,
            o,
            [meta for meta, _ in inputs],
            session.store,
            fetch=lambda meta: session.check_objects(meta, output),
            fisher=fisher_finder(session, [origin for _, origin in inputs]),
        )
        result = fm.merge([choice])
        if result.unresolved:
            raise MergeError(unresolved_message(output, result.unresolved, merging=False))
        write_checkpoint(session, result.metadata, output, Path(output))
    out.write(f"merged {len(models)} models with {strategy} into {output}\n")
    return 0


def _repo_path(repo: Repo, output: str) -> str | None:
    """OUT's path from the repository root, the file a bare revision names; None outside it."""
    try:
        rel = Path(os.path.abspath(output)).relative_to(repo.worktree.resolve())
    except ValueError:
        return None
    return rel.as_posix()


def _read_model(
    session: FilterSession, arg: str, default: str | None
) -> tuple[md.Metadata, Origin]:
    if os.path.isfile(arg):
        with open(arg, "rb") as f:
            return md.decode(session.clean(f, os.path.basename(arg)), source=arg), Origin(arg)
    rev, sep, path = arg.partition(":")
    if not sep:
        if default is None:
            raise MergeError(
                f"{arg} is not a file; a bare revision names the output's path in it, and the "
                "output is outside the repository (use REV:PATH)"
            )
        path = default
    data = session.repo.read_blob(f"{rev}:{path}")
    if data is None:
        raise MergeError(f"{arg} is neither a file nor a revision holding {path}")
    source = f"{rev}:{path}"
    if md.looks_like_metadata(data[:64]):
        return md.decode(data, source=source), Origin(path, rev)
    # A checkpoint committed without the filter: read it like a file.
    meta = md.decode(session.clean(io.BytesIO(data), posixpath.basename(path)), source=source)
    return meta, Origin(path, rev)
