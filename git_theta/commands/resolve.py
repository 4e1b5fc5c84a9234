"""`git theta resolve PATH --strategy S`: finish a conflicted checkpoint merge.

Reads the three versions git left in the index (stage 1 base, 2 ours, 3 theirs), merges them
with the strategy, writes the merged checkpoint to the work tree and stages it.
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
from git_theta.merging import (
    MergeChoice,
    merge_metadata,
    read_side,
    unresolved_message,
)

__all__ = ["resolve"]


def resolve(
    path: str,
    *,
    strategy: str,
    options: Sequence[str] = (),
    params: Sequence[str] = (),
    out: TextIO,
) -> int:
    """Merge the conflicted checkpoint at `path` (relative to the current directory).

    Args:
        strategy: a registered merge strategy.
        options: `key=value` strategy options.
        params: globs; the strategy resolves only matching parameters (all must be covered).

    Raises:
        MergeError: `path` is not a conflicted tracked checkpoint, or conflicts remain.
        ConfigError: the strategy or an option is unknown.
    """
    choice = MergeChoice.make(strategy, split_options(" ".join(options)), params)
    with FilterSession(Repo()) as session:
        repo = session.repo
        rel = repo.root_pathspecs([path])[0]
        stages = [repo.read_blob(f":{n}:{rel}") for n in (1, 2, 3)]
        if stages[1] is None or stages[2] is None:
            raise MergeError(
                f"{rel} has no conflicted versions in the index (ours and theirs); "
                "resolve runs after a `git merge` that stopped on this file"
            )
        base, ours, theirs = (
            read_side(data, f":{n}:{rel}") for n, data in zip((1, 2, 3), stages, strict=True)
        )
        assert ours is not None and theirs is not None
        result = merge_metadata(
            base,
            ours,
            theirs,
            choice=choice,
            store=session.store,
            path=rel,
            fetch=lambda meta: session.check_objects(meta, rel),
        )
        if result.unresolved:
            raise MergeError(unresolved_message(rel, result.unresolved, merging=False))
        data = md.encode(result.metadata)
        target = repo.worktree / rel
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".git-theta-resolve-")
        try:
            with os.fdopen(fd, "wb") as f:
                session.smudge(data, rel, f)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        repo.git("add", "--", rel)
    out.write(f"resolved {rel} with {strategy}; staged\n")
    return 0
