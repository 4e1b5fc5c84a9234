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
    type=click.Choice(["dense", "sparse", "low-rank", "ia3", "auto"]),
    help="How changed tensors are stored (default: theta.updateType, else dense).",
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


@click.command("merge-models")
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option(
    "--output", "-o", required=True, metavar="OUT", help="The merged checkpoint to write."
)
@click.option("--base", metavar="REV_OR_PATH", help="The common ancestor (pre-trained model).")
@click.option("--strategy", "-s", required=True, help="A merge strategy (e.g. average, ties).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="A strategy option.")
@params_option
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


COMMANDS = [add, resolve, merge_models]
