"""Objects in the store and on remotes: push, fetch, checkout, fsck, prune, du."""

from __future__ import annotations

import sys

import click

__all__ = ["COMMANDS"]


@click.command()
@click.argument("remote", required=False)
@click.argument("revs", nargs=-1)
@click.option(
    "--all",
    "all_history",
    is_flag=True,
    help="Every commit reachable from REVs, not only new ones.",
)
def push(remote: str | None, revs: tuple[str, ...], all_history: bool) -> None:
    """Upload checkpoint objects of REVs (default HEAD) that REMOTE's LFS server lacks."""
    from git_theta.commands.push import push as run

    sys.exit(run(remote, list(revs), all_history=all_history, out=sys.stdout))


@click.command()
@click.argument("remote", required=False)
@click.argument("revs", nargs=-1)
def fetch(remote: str | None, revs: tuple[str, ...]) -> None:
    """Download the objects the checkpoints in REVs (default HEAD) need; checks nothing out."""
    from git_theta.commands.fetch import fetch as run

    sys.exit(run(remote, list(revs), out=sys.stdout))


@click.command()
@click.option("--remote", help="Download from this remote (default: as Git LFS picks).")
def checkout(remote: str | None) -> None:
    """Restore tracked checkpoints that are missing or hold metadata (e.g. cloned without git-theta)."""
    from git_theta.commands.checkout import checkout as run

    sys.exit(run(remote, out=sys.stdout))


@click.command()
@click.argument("revs", nargs=-1)
@click.option(
    "--repair",
    is_flag=True,
    help="Move bad objects aside to <store>/bad and download them again from the remote.",
)
@click.option("--decode", is_flag=True, help="Also decode every object and check its tensor.")
def fsck(revs: tuple[str, ...], repair: bool, decode: bool) -> None:
    """Verify the objects REVs (default: HEADs, branches, index, stash) need; exit 1 if bad."""
    from git_theta.commands.fsck import fsck as run

    sys.exit(run(list(revs), repair=repair, decode=decode, out=sys.stdout))


@click.command()
@click.option("--dry-run", "-n", is_flag=True, help="Print what would be removed; remove nothing.")
@click.option(
    "--verify-remote",
    is_flag=True,
    help="Also remove objects only older versions use, if the remote holds them.",
)
@click.option(
    "--recent",
    "recent_days",
    type=click.FloatRange(min=0),
    metavar="DAYS",
    help="Keep objects of commits newer than DAYS (default 3).",
)
@click.option("--remote", help="The remote --verify-remote asks (default: as Git LFS picks).")
def prune(
    dry_run: bool, verify_remote: bool, recent_days: float | None, remote: str | None
) -> None:
    """Delete objects nothing references (refs, reflogs, indexes, stash, recent commits)."""
    from git_theta.commands.prune import prune as run

    sys.exit(
        run(
            dry_run=dry_run,
            verify_remote=verify_remote,
            recent_days=recent_days,
            remote=remote,
            out=sys.stdout,
        )
    )


@click.command()
@click.argument("revs", nargs=-1)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def du(revs: tuple[str, ...], fmt: str) -> None:
    """What the store holds per checkpoint and version, and what prune would reclaim."""
    from git_theta.commands.du import du as run

    sys.exit(run(list(revs), fmt=fmt, out=sys.stdout))


COMMANDS = [push, fetch, checkout, fsck, prune, du]
