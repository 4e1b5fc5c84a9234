"""The `git-theta` command: options, then one library call per command.

The commands live by area in git_theta/cli_commands/; this module is the group that holds
them, `help`, and the console entry point.
"""

from __future__ import annotations

import sys

import click

from git_theta.cli_commands import entry_points, history, models, setup, storage
from git_theta.error_handler import error_handler

__all__ = ["main"]


# Commands that first put back the pre-push hook if Git LFS overwrote it (hooks.restore);
# never the per-file entry points git runs (filters, drivers, textconv, pager).
RESTORE_HOOK_FIRST = frozenset(
    [
        "add",
        "ls-files",
        "diff",
        "log",
        "check",
        "push",
        "fetch",
        "checkout",
        "resolve",
        "fsck",
        "du",
    ]
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="git-theta")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Version-control machine-learning checkpoints with git, one parameter at a time."""
    if ctx.invoked_subcommand in RESTORE_HOOK_FIRST:
        from git_theta.git.hooks import restore_quietly

        restore_quietly(sys.stderr)


# Each area's commands, in the order of `git_theta/cli_commands/`; help lists them sorted.
for _area in (setup, models, history, storage, entry_points):
    for _command in _area.COMMANDS:
        cli.add_command(_command)


@cli.command("help")
@click.argument("command", required=False)
def help_(command: str | None) -> None:
    """Show COMMAND's help, or the list of commands (`man git-theta` has them all)."""
    parent = click.get_current_context().find_root()
    if command is None:
        click.echo(parent.get_help())
        return
    found = cli.get_command(parent, command)
    if found is None or found.hidden:
        raise click.UsageError(f"no such command {command!r}; `git theta help` lists them")
    click.echo(found.get_help(click.Context(found, info_name=command, parent=parent)))


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
