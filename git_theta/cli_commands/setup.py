"""Setting git-theta up in Git: install, track, and the pager git runs for it."""

from __future__ import annotations

import sys

import click

__all__ = ["COMMANDS"]


@click.command()
@click.option("--local", is_flag=True, help="Configure only the current repository.")
@click.option(
    "--pager/--no-pager",
    default=True,
    show_default=True,
    help="Show checkpoint diffs in `git show` / `git log -p` as per-parameter tables "
    "(pager.show, pager.log; your own pager still runs after it).",
)
@click.option(
    "--scope",
    type=click.Choice(["global", "user", "repository"]),
    help="git-theta 0.2's spelling: repository is --local; global and user the default.",
)
def install(local: bool, pager: bool, scope: str | None) -> None:
    """Register git-theta's filter, merge and diff drivers in git config."""
    from git_theta.commands.install import install as run

    local = local or scope == "repository"

    sys.exit(run(local=local, pager=pager, out=sys.stdout))


@click.command()
@click.option("--local", is_flag=True, help="Unconfigure only the current repository.")
def uninstall(local: bool) -> None:
    """Remove git-theta's drivers from git config."""
    from git_theta.commands.install import uninstall as run

    sys.exit(run(local=local, out=sys.stdout))


@click.command()
@click.argument("patterns", nargs=-1)
@click.option(
    "--force",
    is_flag=True,
    help="Take over paths another filter, merge or diff driver (e.g. Git LFS) has.",
)
def track(patterns: tuple[str, ...], force: bool) -> None:
    """Store files matching PATTERNS per parameter (edits and stages .gitattributes).

    With no PATTERNS, list the tracked patterns.
    """
    from git_theta.commands.track import track as run

    sys.exit(run(list(patterns), out=sys.stdout, force=force))


@click.command()
@click.argument("patterns", nargs=-1, required=True)
def untrack(patterns: tuple[str, ...]) -> None:
    """Stop storing files matching PATTERNS per parameter."""
    from git_theta.commands.track import untrack as run

    sys.exit(run(list(patterns), out=sys.stdout))


@click.command()
def pager() -> None:
    """Read git's patch output on stdin; show checkpoint hunks as per-parameter tables.

    git runs it as the pager of `git show` and `git log` (see `install --pager`), and it
    hands everything on to your own pager; `git log -p | git theta pager` works in a pipe.
    """
    from git_theta.commands.pager import pager as run

    sys.exit(run(source=sys.stdin.fileno(), out=sys.stdout.buffer))


COMMANDS = [install, uninstall, track, untrack, pager]
