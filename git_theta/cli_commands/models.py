"""Changing checkpoints: add with update types, resolve a conflicted merge, merge models."""

from __future__ import annotations

import sys

import click

from git_theta.cli_commands.options import params_option

__all__ = ["COMMANDS"]


@click.command("add")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--update-type",
    type=click.Choice(["dense", "sparse", "delta", "low-rank", "ia3", "auto"]),
    help="How changed tensors are stored (default: theta.updateType, else auto: the "
    "smallest of dense, sparse and delta).",
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


@click.command()
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
@params_option
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


@click.command("similar")
@click.argument("target", default="HEAD", metavar="[REV]")
@click.option("--to", "to", multiple=True, metavar="REV", help="A revision to compare (repeat).")
@click.option("--branches", "scope", flag_value="branches", help="Every local branch (default).")
@click.option("--all", "scope", flag_value="all", help="Branches, remote branches and tags.")
@click.option("--base", metavar="REV", help="Task vectors against REV, not each merge base.")
@click.option("--path", "paths", multiple=True, metavar="PATH", help="Checkpoint(s) to compare.")
@click.option("--param", "params", multiple=True, metavar="GLOB", help="Only these parameters.")
@click.option("--top", type=int, metavar="K", help="Show the K most similar.")
@click.option("--groups", is_flag=True, help="Also show each parameter group (text format).")
@click.option("--fisher", is_flag=True, help="Weight by REV's Fisher file (as merge -s fisher).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text")
def similar(
    target: str,
    to: tuple[str, ...],
    scope: str | None,
    base: str | None,
    paths: tuple[str, ...],
    params: tuple[str, ...],
    top: int | None,
    groups: bool,
    fisher: bool,
    fmt: str,
) -> None:
    """Rank revisions by the cosine similarity of their task vectors to REV's (HEAD)."""
    from git_theta.commands.similar import similar as run

    if to and scope:
        raise click.UsageError("give --to, or --branches or --all, not both")
    sys.exit(
        run(
            target,
            to=to,
            everything=scope == "all",
            base=base,
            paths=paths,
            params=params,
            top=top,
            fmt=fmt,
            groups=groups,
            fisher=fisher,
            out=sys.stdout,
        )
    )


@click.command("merge-models")
@click.argument("models", nargs=-1, metavar="MODEL...")
@click.option(
    "--output", "-o", required=True, metavar="OUT", help="The merged checkpoint to write."
)
@click.option("--base", metavar="REV_OR_PATH", help="The common ancestor (pre-trained model).")
@click.option("--strategy", "-s", required=True, help="A merge strategy (e.g. average, ties).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="A strategy option.")
@params_option
@click.option("--select", type=int, metavar="K", help="Merge the K candidates most similar.")
@click.option("--similar-to", default="HEAD", metavar="REV", help="What --select compares to.")
@click.option("--stage", is_flag=True, help="Stage the merged metadata (keeps LoRA sums low-rank).")
def merge_models(
    models: tuple[str, ...],
    output: str,
    base: str | None,
    strategy: str,
    options: tuple[str, ...],
    params: tuple[str, ...],
    select: int | None,
    similar_to: str,
    stage: bool,
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
            select=select,
            similar_to=similar_to,
            stage=stage,
            out=sys.stdout,
        )
    )


COMMANDS = [add, resolve, similar, merge_models]
