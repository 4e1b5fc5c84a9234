"""Putting merged metadata itself in the index (`merge-models --stage`).

`git add` of a merged checkpoint cleans its tensors anew, so a merge that stayed structured (a
sum of LoRA updates as one stacked low-rank update) would be stored dense. Staging the merged
metadata keeps the structure; the `git add` that follows only refreshes the index's stat data
(its clean finds every tensor unchanged by hash).
"""

from __future__ import annotations

import os
from pathlib import Path

from git_theta import metadata as md
from git_theta.errors import ConfigError
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata

__all__ = ["stage_metadata", "staged_path"]


def staged_path(repo: Repo, target: str | os.PathLike[str]) -> str:
    """`target`'s path in the work tree, which must be tracked by git-theta.

    Raises:
        ConfigError: it is outside the work tree or not tracked.
    """
    full = Path(os.path.abspath(target))
    try:
        rel = full.relative_to(repo.worktree.resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"{target}: --stage needs an output inside the repository") from None
    if repo.check_attr("filter", rel) != "theta":
        raise ConfigError(f"{rel}: not tracked by git-theta; run `git theta track {rel}` first")
    return rel


def stage_metadata(repo: Repo, target: str | os.PathLike[str], metadata: Metadata) -> str:
    """Stage `metadata` as the tracked checkpoint `target` (written already); returns its blob."""
    rel = staged_path(repo, target)
    data = md.encode(metadata)
    blob = repo.git("hash-object", "-w", "--no-filters", "--stdin", input=data).decode().strip()
    repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}")
    repo.git("add", "--", rel)
    return blob
