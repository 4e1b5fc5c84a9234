"""The `git-theta` command: options, then one library call per command."""

from __future__ import annotations

import sys

import click

from git_theta.error_handler import error_handler

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="git-theta")
def cli() -> None:
    """Version-control machine-learning checkpoints with git, one parameter at a time."""


@cli.command()
@click.option("--local", is_flag=True, help="Configure only the current repository.")
def install(local: bool) -> None:
    """Register git-theta's filter, merge and diff drivers in git config."""
    from git_theta.commands.install import install as run

    sys.exit(run(local=local, out=sys.stdout))


@cli.command()
@click.option("--local", is_flag=True, help="Unconfigure only the current repository.")
def uninstall(local: bool) -> None:
    """Remove git-theta's drivers from git config."""
    from git_theta.commands.install import uninstall as run

    sys.exit(run(local=local, out=sys.stdout))


@cli.command()
@click.argument("patterns", nargs=-1, required=True)
def track(patterns: tuple[str, ...]) -> None:
    """Store files matching PATTERNS per parameter (edits and stages .gitattributes)."""
    from git_theta.commands.track import track as run

    sys.exit(run(list(patterns), out=sys.stdout))


@cli.command()
@click.argument("patterns", nargs=-1, required=True)
def untrack(patterns: tuple[str, ...]) -> None:
    """Stop storing files matching PATTERNS per parameter."""
    from git_theta.commands.track import untrack as run

    sys.exit(run(list(patterns), out=sys.stdout))


@cli.command("ls-files")
@click.argument("rev", required=False)
@click.option("--params", is_flag=True, help="List each parameter group too.")
def ls_files(rev: str | None, params: bool) -> None:
    """List tracked checkpoints in REV (default: the index)."""
    from git_theta.commands.ls_files import ls_files as run

    sys.exit(run(rev, params=params, out=sys.stdout))


@cli.command("filter-process", hidden=True)
def filter_process() -> None:
    """Git's long-running filter protocol on stdin/stdout (filter.theta.process)."""
    from git_theta.commands.filter import filter_process as run

    sys.exit(run(sys.stdin.buffer, sys.stdout.buffer, sys.stderr))


@cli.command(hidden=True)
@click.argument("path")
def clean(path: str) -> None:
    """One-shot clean filter: checkpoint on stdin, metadata on stdout."""
    from git_theta.commands.filter import clean as run

    sys.exit(run(path, sys.stdin.buffer, sys.stdout.buffer, sys.stderr))


@cli.command(hidden=True)
@click.argument("path")
def smudge(path: str) -> None:
    """One-shot smudge filter: metadata on stdin, checkpoint on stdout."""
    from git_theta.commands.filter import smudge as run

    sys.exit(run(path, sys.stdin.buffer, sys.stdout.buffer, sys.stderr))


@cli.command("merge-driver", hidden=True)
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.argument("path")
def merge_driver(base: str, ours: str, theirs: str, path: str) -> None:
    """Git's merge driver contract: %O %A %B %P; the result goes to %A."""
    from git_theta.git.merge_driver import merge_driver as run

    sys.exit(run(base, ours, theirs, path))


@cli.command("diff-driver", hidden=True)
@click.argument("args", nargs=-1)
def diff_driver(args: tuple[str, ...]) -> None:
    """Git's external diff contract: path old-file old-hex old-mode new-file new-hex new-mode."""
    from git_theta.git.diff_driver import diff_driver as run

    if len(args) < 7:
        raise click.UsageError("diff-driver expects the 7 arguments git passes")
    sys.exit(run(args[0], args[1], args[4], out=sys.stdout))


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    with error_handler():
        try:
            cli.main(args=argv, prog_name="git-theta", standalone_mode=False)
        except click.ClickException as exc:  # usage errors keep click's message and code 2
            exc.show()
            return exc.exit_code
        except click.exceptions.Abort:
            raise KeyboardInterrupt from None
    return 0
