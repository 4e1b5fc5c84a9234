"""`git theta install` / `uninstall`: the git config that routes tracked files through us."""

from __future__ import annotations

from typing import TextIO

from git_theta.errors import GitThetaError
from git_theta.git import config, hooks, worktree
from git_theta.git.repo import Repo

__all__ = ["install", "uninstall"]


def _scope(local: bool) -> config.Scope:
    if local:
        Repo()  # fails with a clear message outside a repository
    return "local" if local else "global"


def install(*, local: bool, pager: bool = True, out: TextIO) -> int:
    scope = _scope(local)
    config.install(scope=scope)
    out.write(f"git-theta installed in the {scope} git config.\n")
    if pager:
        for key, value in config.install_pager(scope=scope).items():
            out.write(
                f"{key} is already set ({value}), so `git {key.split('.')[1]} -p` shows "
                "checkpoints as textconv text; `git theta pager` can read its output.\n"
            )
    else:
        config.uninstall_pager(scope=scope)
    if local:
        _hook_installed(Repo(), out)
    _prepare_recovery(out)
    return 0


def _hook_installed(repo: Repo, out: TextIO) -> None:
    message = hooks.describe(hooks.install(repo))
    if message:
        out.write(message + "\n")


def _prepare_recovery(out: TextIO) -> None:
    """In a work tree checked out without git-theta, make `git checkout -f` rewrite the
    checkpoints that still hold metadata."""
    try:
        repo = Repo()
    except GitThetaError:
        return  # outside a repository: nothing to recover
    if repo.toplevel is None:
        return
    stale = worktree.unsmudged(repo)
    if stale:
        worktree.mark_for_checkout(repo, stale)
        out.write(
            f"{len(stale)} tracked checkpoint(s) hold metadata, not weights; run "
            "`git checkout -f` or `git theta checkout` to write them out.\n"
        )


def uninstall(*, local: bool, out: TextIO) -> int:
    scope = _scope(local)
    removed = config.uninstall(scope=scope)
    if local:
        hooks.uninstall(Repo())
    out.write(
        f"git-theta removed from the {scope} git config.\n"
        if removed
        else f"git-theta was not installed in the {scope} git config.\n"
    )
    return 0
