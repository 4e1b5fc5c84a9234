"""Tracked checkpoints whose work-tree file still holds metadata (checked out without
git-theta's filter, e.g. cloned by someone who had not installed it) or is missing (deleted, or
removed by git before a smudge that failed), and how to get git to write them again.

Git skips files whose stat data matches the index, so after `git theta install` a plain
`git checkout -f` would leave such files as they are. Clearing their index stat data (re-adding
the same entries with `git update-index --index-info`) makes the next checkout run the filter.
"""

from __future__ import annotations

import os

from git_theta import metadata as md
from git_theta.git.repo import Repo

__all__ = ["absent", "mark_for_checkout", "unsmudged"]

THETA_FILTER = "theta"


def _index_entries(repo: Repo) -> dict[str, bytes]:
    """path -> the `ls-files -s` record of every stage-0 index entry."""
    entries = {}
    for record in repo.git("ls-files", "-s", "-z").split(b"\0"):
        if not record:
            continue
        info, path = record.split(b"\t", 1)
        if info.split()[2] == b"0":
            entries[path.decode("utf-8", "surrogateescape")] = record
    return entries


def _tracked(repo: Repo) -> list[str]:
    """Stage-0 index paths whose `filter` attribute is git-theta's."""
    entries = _index_entries(repo)
    if not entries:
        return []
    out = repo.git(
        "check-attr", "--stdin", "-z", "filter", input="".join(f"{p}\0" for p in entries).encode()
    )
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    return [fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] == THETA_FILTER]


def unsmudged(repo: Repo) -> list[str]:
    """Paths routed through git-theta whose work-tree file starts like metadata."""
    stale = []
    for path in _tracked(repo):
        try:
            with (repo.worktree / path).open("rb") as f:
                head = f.read(len(md.MAGIC))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        if md.looks_like_metadata(head):
            stale.append(path)
    return stale


def absent(repo: Repo) -> list[str]:
    """Paths routed through git-theta that the index has but the work tree lacks (` D` in
    `git status`), leaving out those a sparse checkout keeps out on purpose."""
    gone = [p for p in _tracked(repo) if not os.path.lexists(repo.worktree / p)]
    if not gone:
        return []
    # `ls-files -t` tags skip-worktree entries (sparse checkout) with "S".
    tagged = repo.git("ls-files", "-t", "-z").decode("utf-8", "surrogateescape")
    skipped = {item[2:] for item in tagged.split("\0") if item.startswith("S ")}
    return [p for p in gone if p not in skipped]


def mark_for_checkout(repo: Repo, paths: list[str]) -> None:
    """Clear the index stat data of `paths`, so `git checkout -f` writes them again."""
    entries = _index_entries(repo)
    records = [entries[p] for p in paths if p in entries]
    if records:
        repo.git("update-index", "-z", "--index-info", input=b"\0".join(records) + b"\0")
