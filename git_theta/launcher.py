"""The `git-theta` console script.

Git starts `git-theta filter-process` in every command that reads or writes a checkpoint
(`git status` after a touch, `add`, `checkout`, ...) and waits for its handshake. That path
skips the CLI framework, whose imports are a fifth of the filter's start-up; every other
command goes through git_theta.cli.
"""

from __future__ import annotations

import os
import sys

from git_theta.legacy_env import apply

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    apply(os.environ, warn=sys.stderr)  # git-theta 0.2's GIT_THETA_* variables
    if args == ["filter-process"]:
        from git_theta.commands.filter import serve_process
        from git_theta.error_handler import error_handler

        with error_handler():
            return serve_process()
    from git_theta.cli import main as cli_main

    return cli_main(argv)
