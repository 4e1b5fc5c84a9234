"""Which commits the sides of a merge in progress come from (for files beside a checkpoint,
such as the `fisher` strategy's Fisher files).

Ours is HEAD for `git merge`, `cherry-pick`, `rebase` and `revert` alike. Theirs is harder:

- while the merge driver runs, git has not written MERGE_HEAD, CHERRY_PICK_HEAD or REBASE_HEAD
  yet (checked with git 2.39). `git merge` exports `GITHEAD_<oid>=<name>` for the merged head
  (builtin/merge.c, for merge-recursive's labels), and the rebase backend has already logged
  the commit it is picking as the last line of `<git-dir>/rebase-merge/done`. A cherry-pick or
  revert leaves no trace, so theirs is unknown there;
- after a merge stopped on conflicts, the state refs exist: MERGE_HEAD, CHERRY_PICK_HEAD,
  REBASE_HEAD, or REVERT_HEAD (whose parent is theirs: a revert merges the parent into HEAD
  with the reverted commit as base).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from git_theta.git.repo import Repo

__all__ = ["theirs_after_stop", "theirs_in_driver"]

_GITHEAD = "GITHEAD_"


def theirs_in_driver(repo: Repo, environ: Mapping[str, str] | None = None) -> str | None:
    """The commit theirs comes from, as seen inside the merge driver; None when unknown."""
    env = os.environ if environ is None else environ
    heads = [k[len(_GITHEAD) :] for k in env if k.startswith(_GITHEAD)]
    if len(heads) == 1:
        return heads[0]
    done = repo.git_dir / "rebase-merge" / "done"
    if done.is_file():
        lines = [ln.split() for ln in done.read_text().splitlines() if ln.strip()]
        if (
            lines
            and len(lines[-1]) >= 2
            and lines[-1][0] in ("pick", "p", "edit", "e", "reword", "r")
        ):
            return lines[-1][1]
    return None


def theirs_after_stop(repo: Repo) -> str | None:
    """The commit theirs comes from in a merge, cherry-pick, rebase or revert that stopped."""
    for ref, rev in (
        ("MERGE_HEAD", "MERGE_HEAD"),
        ("CHERRY_PICK_HEAD", "CHERRY_PICK_HEAD"),
        ("REBASE_HEAD", "REBASE_HEAD"),
        ("REVERT_HEAD", "REVERT_HEAD^"),
    ):
        if (repo.git_dir / ref).is_file():
            return rev
    return None
