"""The entry points Git runs (filters, drivers, textconv, hooks): hidden from help."""

from __future__ import annotations

import sys

import click

__all__ = ["COMMANDS"]


@click.command("filter-process", hidden=True)
def filter_process() -> None:
    """Git's long-running filter protocol on stdin/stdout (filter.theta.process)."""
    # The console script serves this without click (git_theta.launcher); `python -m
    # git_theta` and tests calling main() get here.
    from git_theta.commands.filter import serve_process

    sys.exit(serve_process())


@click.command(hidden=True)
@click.argument("path")
def clean(path: str) -> None:
    """One-shot clean filter: checkpoint on stdin, metadata on stdout."""
    from git_theta.commands.filter import serve_clean

    sys.exit(serve_clean(path))


@click.command(hidden=True)
@click.argument("path")
def smudge(path: str) -> None:
    """One-shot smudge filter: metadata on stdin, checkpoint on stdout."""
    from git_theta.commands.filter import serve_smudge

    sys.exit(serve_smudge(path))


@click.command("merge-driver", hidden=True)
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.argument("path")
def merge_driver(base: str, ours: str, theirs: str, path: str) -> None:
    """Git's merge driver contract: %O %A %B %P; the result goes to %A."""
    from git_theta.commands.merge_driver import merge_driver as run

    sys.exit(run(base, ours, theirs, path))


@click.command(hidden=True)
@click.argument("file")
@click.option("--layout", help="The text layout the installed command was made for.")
def textconv(file: str, layout: str | None) -> None:
    """One version of a checkpoint as text, one parameter per line (diff.theta.textconv)."""
    from git_theta.commands.textconv import textconv as run

    sys.exit(run(file, out=sys.stdout, layout=layout))


@click.command("diff-driver", hidden=True)
@click.argument("args", nargs=-1)
def diff_driver(args: tuple[str, ...]) -> None:
    """Git's external diff contract: path old-file old-hex old-mode new-file new-hex new-mode."""
    from git_theta.commands.diff_driver import diff_driver as run

    sys.exit(run(args, out=sys.stdout))


@click.command("pre-push", hidden=True)
@click.argument("remote")
@click.argument("url", required=False, default="")
def pre_push(remote: str, url: str) -> None:
    """Git's pre-push hook contract: remote name and URL; ref lines on stdin."""
    from git_theta.commands.hook import pre_push as run

    sys.exit(run(remote, url, sys.stdin.buffer, sys.stderr))


COMMANDS = [filter_process, clean, smudge, merge_driver, textconv, diff_driver, pre_push]
