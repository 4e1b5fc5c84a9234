"""`git theta diff [REV1 [REV2]] [-- PATH...]`: what changed in tracked checkpoints, per parameter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from git_theta.diffing.compare import CompareOptions, raise_for_missing
from git_theta.diffing.conflicts import both_changed, conflict_report, unmerged_checkpoints
from git_theta.diffing.render import render
from git_theta.diffing.revisions import INDEX, Endpoint, diff_endpoints, parse_revisions
from git_theta.git.repo import Repo

__all__ = ["DiffOptions", "diff"]


@dataclass(frozen=True)
class DiffOptions:
    """How `git theta diff` reports.

    Attributes:
        format: `text`, `json` or `markdown`.
        params: glob patterns; only matching parameters are compared (all when empty).
        top: show at most this many parameters per file, largest relative change first.
        unchanged: list unchanged parameters too.
        cached: compare a revision (default HEAD) with the index, as `git diff --cached`.
    """

    format: str = "text"
    params: tuple[str, ...] = ()
    top: int | None = None
    unchanged: bool = False
    cached: bool = False


def _plain_revisions(old: Endpoint, new: Endpoint) -> list[str]:
    """The `git diff` arguments that compare the same two endpoints."""
    return [e.rev for e in (old, new) if e.rev is not None]


def diff(
    revisions: Sequence[str], paths: Sequence[str], *, options: DiffOptions, out: TextIO
) -> int:
    """Write the per-parameter diff of every tracked checkpoint that differs; in text format,
    other changed paths follow as git's own patch.

    Raises:
        RevisionError: a revision does not exist (git's own message).
        MissingObjectError: tensors that changed are not in the local store.
    """
    repo = Repo()
    try:
        if not revisions and not options.cached:
            conflicted = unmerged_checkpoints(repo, repo.root_pathspecs(paths))
            if conflicted:
                # A stopped merge: ours against theirs, which `git diff --cc` cannot show.
                compare_options = CompareOptions(params=options.params, unchanged=options.unchanged)
                report = conflict_report(repo, conflicted, compare_options)
                raise_for_missing(report.files)
                if options.format == "text":
                    for path in conflicted:
                        names = ", ".join(both_changed(repo, path)) or "none"
                        out.write(
                            f"# {path} is conflicted: ours (:2) -> theirs (:3); changed on both "
                            f"sides: {names}\n"
                        )
                out.write(render(report, options.format, top=options.top))
                return 0
        old, new = parse_revisions(repo, revisions, cached=options.cached)
        compared = diff_endpoints(
            repo,
            old,
            new,
            repo.root_pathspecs(paths),
            CompareOptions(params=options.params, unchanged=options.unchanged),
        )
        raise_for_missing(compared.report.files)
        out.write(render(compared.report, options.format, top=options.top))
        if options.format == "text" and compared.plain_paths:
            patch = repo.plain_diff(
                _plain_revisions(old, new),
                [f":(literal){p}" for p in compared.plain_paths],
                cached=new is INDEX,
            )
            out.write(patch.decode("utf-8", "replace"))
    finally:
        repo.close()
    return 0
