"""Hugging Face repositories: migration from Git LFS, and the shard index's filter and driver."""

from __future__ import annotations

import sys

import click

__all__ = ["COMMANDS"]


@click.group()
def migrate() -> None:
    """Convert Git LFS history to git-theta."""


@migrate.command("info")
@click.option(
    "--include", "patterns", multiple=True, help="Pattern of files to convert (repeatable)."
)
@click.option("--everything", is_flag=True, help="Look at every local branch and tag.")
@click.argument("refs", nargs=-1)
def migrate_info(patterns: tuple[str, ...], everything: bool, refs: tuple[str, ...]) -> None:
    """What `migrate import` would convert in REFS, and the tensor bytes it would store."""
    from git_theta.commands.migrate import migrate_info as run

    sys.exit(run(patterns, refs, everything=everything, out=sys.stdout))


@migrate.command("import")
@click.option(
    "--include", "patterns", multiple=True, help="Pattern of files to convert (repeatable)."
)
@click.option("--everything", is_flag=True, help="Rewrite every local branch and tag.")
@click.argument("refs", nargs=-1)
def migrate_import(patterns: tuple[str, ...], everything: bool, refs: tuple[str, ...]) -> None:
    """Rewrite REFS (default: the current branch) so every version of the Git LFS files
    matching --include becomes git-theta metadata."""
    from git_theta.commands.migrate import migrate_import as run

    sys.exit(run(patterns, refs, everything=everything, out=sys.stdout))


@click.command("index-clean", hidden=True)
@click.argument("path")
def index_clean(path: str) -> None:
    """Clean filter for shard indexes: passes them through, warns when shards disagree."""
    from git_theta.commands.index_clean import index_clean as run

    sys.exit(run(path))


@click.command("index-merge-driver", hidden=True)
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.argument("path")
def index_merge_driver(base: str, ours: str, theirs: str, path: str) -> None:
    """Merge driver for shard indexes (*.safetensors.index.json): %O %A %B %P."""
    from git_theta.commands.index_merge_driver import index_merge_driver as run

    sys.exit(run(base, ours, theirs, path))


COMMANDS = [migrate, index_clean, index_merge_driver]
