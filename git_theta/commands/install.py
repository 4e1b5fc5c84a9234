"""`git theta install` / `uninstall`: the git config that routes tracked files through us."""

from __future__ import annotations

from typing import TextIO

from git_theta.git import config
from git_theta.git.repo import Repo

__all__ = ["install", "uninstall"]


def _scope(local: bool) -> config.Scope:
    if local:
        Repo()  # fails with a clear message outside a repository
    return "local" if local else "global"


def install(*, local: bool, out: TextIO) -> int:
    scope = _scope(local)
    config.install(scope=scope)
    out.write(f"git-theta installed in the {scope} git config.\n")
    return 0


def uninstall(*, local: bool, out: TextIO) -> int:
    scope = _scope(local)
    removed = config.uninstall(scope=scope)
    out.write(
        f"git-theta removed from the {scope} git config.\n"
        if removed
        else f"git-theta was not installed in the {scope} git config.\n"
    )
    return 0
