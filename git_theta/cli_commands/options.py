"""Options that several commands share, written once so they read the same everywhere."""

from __future__ import annotations

import click

__all__ = ["params_option"]

params_option = click.option(
    "--param",
    "params",
    multiple=True,
    metavar="PATTERN",
    help="Only parameters matching this glob (repeatable).",
)
