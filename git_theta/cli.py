"""The `git-theta` command: options, then one library call per command."""

from __future__ import annotations

import sys

import click

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


@cli.command()
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


@cli.command()
@click.option("--local", is_flag=True, help="Unconfigure only the current repository.")
def uninstall(local: bool) -> None:
    """Remove git-theta's drivers from git config."""
    from git_theta.commands.install import uninstall as run

    sys.exit(run(local=local, out=sys.stdout))


@cli.command()
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


@cli.command()
@click.argument("patterns", nargs=-1, required=True)
def untrack(patterns: tuple[str, ...]) -> None:
    """Stop storing files matching PATTERNS per parameter."""
    from git_theta.commands.track import untrack as run

    sys.exit(run(list(patterns), out=sys.stdout))


@cli.command("add")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--update-type",
    type=click.Choice(["dense", "sparse", "delta", "low-rank", "ia3", "auto"]),
    help="How changed tensors are stored (default: theta.updateType, else auto: the smallest "
    "of dense, sparse and delta).",
)
@click.option(
    "--update-path",
    type=click.Path(exists=True),
    help="A PEFT adapter directory (or its adapter_model.safetensors) for low-rank or ia3.",
)
@click.option(
    "--update-data",
    type=click.Path(exists=True, dir_okay=False),
    help="git-theta 0.2's side file: <param>/R and /C (low-rank), /ia3 (ia3), CSR "
    "/data, /indices, /indptr, /shape (sparse).",
)
@click.option("--rank", type=click.IntRange(min=1), help="Rank of a truncated SVD (lossy).")
@click.option(
    "--accept-lossy",
    is_flag=True,
    help="With --rank: store the approximation and rewrite the file with it without asking.",
)
def add(
    paths: tuple[str, ...],
    update_type: str | None,
    update_path: str | None,
    update_data: str | None,
    rank: int | None,
    accept_lossy: bool,
) -> None:
    """Stage tracked checkpoints, storing changes as updates (LoRA, IA3, sparse, ...)."""
    from pathlib import Path

    from git_theta.commands.add import add as run
    from git_theta.updates.policy import UpdatePolicy

    policy = None
    if update_type or update_path or rank or update_data:
        policy = UpdatePolicy(
            kind=update_type or ("low-rank" if update_path or rank or update_data else "dense"),
            path=Path(update_path).resolve() if update_path else None,
            rank=rank,
            data=Path(update_data).resolve() if update_data else None,
        )
    confirm = None
    if sys.stdin.isatty() and sys.stdout.isatty():

        def confirm(question: str) -> bool:
            return click.confirm(question, default=False)

    sys.exit(run(paths, policy, out=sys.stdout, accept_lossy=accept_lossy, confirm=confirm))


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
    # The console script serves this without click (git_theta.launcher); `python -m
    # git_theta` and tests calling main() get here.
    from git_theta.commands.filter import serve_process

    sys.exit(serve_process())


@cli.command(hidden=True)
@click.argument("path")
def clean(path: str) -> None:
    """One-shot clean filter: checkpoint on stdin, metadata on stdout."""
    from git_theta.commands.filter import serve_clean

    sys.exit(serve_clean(path))


@cli.command(hidden=True)
@click.argument("path")
def smudge(path: str) -> None:
    """One-shot smudge filter: metadata on stdin, checkpoint on stdout."""
    from git_theta.commands.filter import serve_smudge

    sys.exit(serve_smudge(path))


@cli.command("merge-driver", hidden=True)
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.argument("path")
def merge_driver(base: str, ours: str, theirs: str, path: str) -> None:
    """Git's merge driver contract: %O %A %B %P; the result goes to %A."""
    from git_theta.commands.merge_driver import merge_driver as run

    sys.exit(run(base, ours, theirs, path))


@cli.command(hidden=True)
@click.argument("file")
@click.option("--layout", help="The text layout the installed command was made for.")
def textconv(file: str, layout: str | None) -> None:
    """One version of a checkpoint as text, one parameter per line (diff.theta.textconv)."""
    from git_theta.commands.textconv import textconv as run

    sys.exit(run(file, out=sys.stdout, layout=layout))


@cli.command()
def pager() -> None:
    """Read git's patch output on stdin; show checkpoint hunks as per-parameter tables.

    git runs it as the pager of `git show` and `git log` (see `install --pager`), and it
    hands everything on to your own pager; `git log -p | git theta pager` works in a pipe.
    """
    from git_theta.commands.pager import pager as run

    sys.exit(run(source=sys.stdin.fileno(), out=sys.stdout.buffer))


@cli.command("diff-driver", hidden=True)
@click.argument("args", nargs=-1)
def diff_driver(args: tuple[str, ...]) -> None:
    """Git's external diff contract: path old-file old-hex old-mode new-file new-hex new-mode."""
    from git_theta.commands.diff_driver import diff_driver as run

    sys.exit(run(args, out=sys.stdout))


class _WithPathspecs(click.Command):
    """Arguments after `--` are pathspecs, kept apart from revisions as git keeps them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["pathspecs"] = tuple(args[cut + 1 :])
            args = args[:cut]
        return super().parse_args(ctx, args)


@cli.command("diff", cls=_WithPathspecs)
@click.argument("revisions", nargs=-1, metavar="[REV1 [REV2]] [-- PATH...]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="PATTERN",
    help="Only parameters matching this glob (repeatable).",
)
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


@cli.command("log", cls=_WithPathspecs)
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


@cli.command()
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


@cli.command()
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


@cli.command()
@click.argument("remote", required=False)
@click.argument("revs", nargs=-1)
def fetch(remote: str | None, revs: tuple[str, ...]) -> None:
    """Download the objects the checkpoints in REVs (default HEAD) need; checks nothing out."""
    from git_theta.commands.fetch import fetch as run

    sys.exit(run(remote, list(revs), out=sys.stdout))


@cli.command()
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


@cli.command()
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


@cli.command()
@click.argument("revs", nargs=-1)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def du(revs: tuple[str, ...], fmt: str) -> None:
    """What the store holds per checkpoint and version, and what prune would reclaim."""
    from git_theta.commands.du import du as run

    sys.exit(run(list(revs), fmt=fmt, out=sys.stdout))


@cli.command()
@click.option("--remote", help="Download from this remote (default: as Git LFS picks).")
def checkout(remote: str | None) -> None:
    """Restore tracked checkpoints that are missing or hold metadata (e.g. cloned without git-theta)."""
    from git_theta.commands.checkout import checkout as run

    sys.exit(run(remote, out=sys.stdout))


@cli.command()
@click.argument("path")
@click.option("--strategy", "-s", help="A merge strategy (e.g. average, ties).")
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A strategy option, e.g. density=0.5 (repeatable).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="PATTERN",
    help="Only parameters matching this glob (repeatable).",
)
@click.option(
    "--interactive", "-i", is_flag=True, help="Choose strategies per parameter at the terminal."
)
def resolve(
    path: str,
    strategy: str | None,
    options: tuple[str, ...],
    params: tuple[str, ...],
    interactive: bool,
) -> None:
    """Finish a conflicted checkpoint merge at PATH with a strategy, and stage it."""
    from git_theta.commands.resolve import resolve as run

    if interactive == (strategy is not None):
        raise click.UsageError("give either --strategy or --interactive")
    if interactive and (options or params):
        raise click.UsageError("--option and --param go with --strategy, not --interactive")
    sys.exit(
        run(
            path,
            strategy=strategy,
            options=options,
            params=params,
            interactive=interactive,
            out=sys.stdout,
        )
    )


@cli.command("merge-models")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option(
    "--output", "-o", required=True, metavar="OUT", help="The merged checkpoint to write."
)
@click.option("--base", metavar="REV_OR_PATH", help="The common ancestor (pre-trained model).")
@click.option("--strategy", "-s", required=True, help="A merge strategy (e.g. average, ties).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="A strategy option.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="PATTERN",
    help="Only parameters matching this glob.",
)
def merge_models(
    models: tuple[str, ...],
    output: str,
    base: str | None,
    strategy: str,
    options: tuple[str, ...],
    params: tuple[str, ...],
) -> None:
    """Merge MODELs (files, REV:PATH, or revisions holding OUT's path) into OUT."""
    from git_theta.commands.merge_models import merge_models as run

    sys.exit(
        run(
            models,
            output=output,
            base=base,
            strategy=strategy,
            options=options,
            params=params,
            out=sys.stdout,
        )
    )


@cli.command("pre-push", hidden=True)
@click.argument("remote")
@click.argument("url", required=False, default="")
def pre_push(remote: str, url: str) -> None:
    """Git's pre-push hook contract: remote name and URL; ref lines on stdin."""
    from git_theta.commands.hook import pre_push as run

    sys.exit(run(remote, url, sys.stdin.buffer, sys.stderr))


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
