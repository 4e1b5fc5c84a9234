"""`git theta merge-models OUT A B [--base O] --strategy S`: merge two checkpoint files.

The same per-parameter merge as `git merge` (three-way against O when given; without O,
parameters that differ are conflicts for the strategy), for files outside history. Tensors go
through the repository's object store, so the command runs inside a repository.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from git_theta import metadata as md
from git_theta.errors import MergeError
from git_theta.filters import FilterSession
from git_theta.git.repo import Repo
from git_theta.merges import split_options
from git_theta.merging import MergeChoice, merge_metadata, unresolved_message

__all__ = ["merge_models"]


def merge_models(
    output: str,
    ours: str,
    theirs: str,
    *,
    base: str | None,
    strategy: str,
    options: Sequence[str] = (),
    params: Sequence[str] = (),
    out: TextIO,
) -> int:
    """Write the merge of checkpoint files `ours` and `theirs` (against `base`) to `output`.

    Raises:
        MergeError: conflicts remain that the strategy cannot resolve, or sides disagree in
            shape or dtype.
        CheckpointError: an input is not a checkpoint git-theta reads.
    """
    choice = MergeChoice.make(strategy, split_options(" ".join(options)), params)
    with FilterSession(Repo()) as session:

        def clean(path: str) -> md.Metadata:
            with open(path, "rb") as f:
                return md.decode(session.clean(f, os.path.basename(path)), source=path)

        o = clean(base) if base is not None else None
        a, b = clean(ours), clean(theirs)
        result = merge_metadata(o, a, b, choice=choice, store=session.store, path=output)
        if result.unresolved:
            raise MergeError(unresolved_message(output, result.unresolved, merging=False))
        target = Path(output)
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=".git-theta-merge-")
        try:
            with os.fdopen(fd, "wb") as f:
                session.smudge(md.encode(result.metadata), output, f)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    out.write(f"merged {ours} and {theirs} with {strategy} into {output}\n")
    return 0
