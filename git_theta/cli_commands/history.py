"""Looking at checkpoints in history: ls-files, diff, log, check."""

from __future__ import annotations

import sys

import click

from git_theta.cli_commands.options import params_option

__all__ = ["COMMANDS"]


@click.command("ls-files")
@click.argument("rev", required=False)
@click.option("--params", is_flag=True, help="List each parameter group too.")
def ls_files(rev: str | None, params: bool) -> None:
    """List tracked checkpoints in REV (default: the index)."""
    from git_theta.commands.ls_files import ls_files as run

    sys.exit(run(rev, params=params, out=sys.stdout))


class _WithPathspecs(click.Command):
    """Arguments after `--` are pathspecs, kept apart from revisions as git keeps them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["pathspecs"] = tuple(args[cut + 1 :])
            args = args[:cut]
        return super().parse_args(ctx, args)


@click.command("diff", cls=_WithPathspecs)
@click.argument("revisions", nargs=-1, metavar="[REV1 [REV2]] [-- PATH...]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@params_option
@click.option(
    "--top",
    type=click.IntRange(min=1),
    metavar="N",
    help="At most N parameters per file, largest change first.",
)
@click.option("--unchanged", is_flag=True, help="List unchanged parameters too.")
@click.option(
    "--cached", "--staged", is_flag=True, help="Compare REV (default HEAD) with the index."
)
def diff(
    revisions: tuple[str, ...],
    fmt: str,
    params: tuple[str, ...],
    top: int | None,
    unchanged: bool,
    cached: bool,
) -> None:
    """Per-parameter changes of tracked checkpoints; revisions and paths as for git diff."""
    from git_theta.commands.diff import DiffOptions
    from git_theta.commands.diff import diff as run

    paths = click.get_current_context().meta.get("pathspecs", ())
    options = DiffOptions(format=fmt, params=params, top=top, unchanged=unchanged, cached=cached)
    sys.exit(run(revisions, paths, options=options, out=sys.stdout))


@click.command("log", cls=_WithPathspecs)
@click.argument("revisions", nargs=-1, metavar="[REV-RANGE] [-- PATH...]")
@click.option("-n", "--max-count", type=click.IntRange(min=1), help="At most N commits.")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    metavar="N",
    help="At most N parameters per file, largest change first.",
)
def log(revisions: tuple[str, ...], max_count: int | None, top: int | None) -> None:
    """Each commit's per-parameter changes (what git log -p shows with --ext-diff)."""
    from git_theta.commands.log import log as run

    paths = click.get_current_context().meta.get("pathspecs", ())
    sys.exit(run(revisions, paths, max_count=max_count, top=top, out=sys.stdout))


@click.command()
@click.argument("rev_range", metavar="[REV-RANGE]", required=False)
@click.option(
    "--frozen",
    multiple=True,
    metavar="PATTERN",
    help="Parameters matching this glob must not change (repeatable).",
)
@click.option(
    "--max-relative-change",
    type=click.FloatRange(min=0),
    metavar="X",
    help="Largest ||new-old||/||old|| allowed.",
)
@click.option("--no-nan", is_flag=True, help="No NaN or Inf in added or modified tensors.")
@click.option("--allow-shape-change", is_flag=True, help="Let parameters change shape.")
def check(
    rev_range: str | None,
    frozen: tuple[str, ...],
    max_relative_change: float | None,
    no_nan: bool,
    allow_shape_change: bool,
) -> None:
    """Exit 1 listing each rule a checkpoint change breaks (default range: HEAD -> index)."""
    from git_theta.commands.check import check as run

    sys.exit(
        run(
            rev_range,
            frozen=frozen,
            max_relative_change=max_relative_change,
            no_nan=no_nan,
            allow_shape_change=allow_shape_change,
            out=sys.stdout,
        )
    )


COMMANDS = [ls_files, diff, log, check]
