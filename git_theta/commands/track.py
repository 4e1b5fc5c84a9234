"""`git theta track` / `untrack`: route file patterns through git-theta in `.gitattributes`."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TextIO

from git_theta.commands import tracking
from git_theta.git import attributes, hooks
from git_theta.git.repo import Repo

__all__ = ["track", "untrack"]


def _root_relative(repo: Repo, pattern: str) -> str:
    """A pattern given in a subdirectory, made relative to the root as git-lfs does."""
    prefix = os.path.relpath(Path.cwd().resolve(), repo.worktree.resolve())
    if prefix == "." or pattern.startswith("/"):
        return pattern
    return str(PurePosixPath(*Path(prefix).parts) / pattern)


def track(patterns: list[str], out: TextIO) -> int:
    repo = Repo()
    if not patterns:
        return tracking.list_tracked(repo, out)
    tracking.require_installed(repo)
    routed = tracking.committed_theta_paths(repo)
    file = repo.worktree / ".gitattributes"
    wanted = [_root_relative(repo, p) for p in patterns]
    added = attributes.add_patterns(file, wanted)
    for pattern in wanted:
        verb = "Tracking" if pattern in added else "Already tracking"
        out.write(f'{verb} "{pattern}"\n')
    repo.git("add", "--", ".gitattributes")
    if hooks.install(repo) == "chained":
        out.write("The existing pre-push hook was kept as pre-push.legacy and runs first.\n")
    if added and tracking.committed_theta_paths(repo) - routed:
        out.write(
            "Files already committed stay as they are until re-added: "
            "`git add --renormalize .` converts them.\n"
        )
    return 0


def untrack(patterns: list[str], out: TextIO) -> int:
    repo = Repo()
    file = repo.worktree / ".gitattributes"
    wanted = [_root_relative(repo, p) for p in patterns]
    removed = attributes.remove_patterns(file, wanted)
    for pattern in wanted:
        verb = "Untracking" if pattern in removed else "Was not tracking"
        out.write(f'{verb} "{pattern}"\n')
    if file.exists():
        repo.git("add", "--", ".gitattributes")
    return 0
