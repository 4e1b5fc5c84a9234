"""Opening a merge of one tracked checkpoint in a repository: the FileMerge wiring (the store,
fetching absent objects, finding Fisher files) the merge driver, `git theta resolve` and
`Repository.merge` share, and writing the merged checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from git_theta import metadata as md
from git_theta.context import RepoContext
from git_theta.merges.engine import FileMerge, FisherFinder, read_param
from git_theta.metadata import Metadata

if TYPE_CHECKING:
    from git_theta.merges.fisher_files import FisherFile, Origin

__all__ = ["fisher_finder", "open_merge", "write_checkpoint"]


def fisher_finder(
    ctx: RepoContext, origins: Sequence[Origin | None], *, unknown: str = ""
) -> FisherFinder:
    """Finds the Fisher files of sides that came from `origins` (see merges/fisher_files.py),
    reading tracked ones through `ctx`'s store and fetching their objects when absent."""

    def find(option: str) -> list[FisherFile]:
        from git_theta.merges.fisher_files import open_fisher_files

        return open_fisher_files(
            option,
            origins,
            repo=ctx.repo,
            load=lambda entry, source, name: read_param(ctx.store, entry, source, name),
            fetch=ctx.check_objects,
            unknown=unknown,
        )

    return find


def open_merge(
    ctx: RepoContext,
    path: str,
    base: Metadata | None,
    sides: Sequence[Metadata],
    origins: Sequence[Origin | None],
    *,
    unknown: str = "",
) -> FileMerge:
    """The merge of `sides` (ours first) against `base` for the checkpoint named `path`, reading
    and writing tensors in `ctx`'s store, fetching absent objects, and finding the Fisher files
    of the sides that came from `origins` (`unknown`: the error when one is None).

    Raises:
        MergeError: a side cannot be merged at all (see FileMerge).
    """
    return FileMerge(
        path,
        base,
        list(sides),
        ctx.store,
        fetch=lambda meta: ctx.check_objects(meta, path),
        fisher=fisher_finder(ctx, origins, unknown=unknown),
    )


def write_checkpoint(ctx: RepoContext, metadata: Metadata, path: str, target: Path) -> None:
    """Write the checkpoint `metadata` describes to `target` (through a temp file beside it, so
    a failure leaves `target` as it was); `path` names it in messages."""
    from git_theta.smudge import Smudger

    Smudger(ctx).write_file(md.encode(metadata), path, target)
