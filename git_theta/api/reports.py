"""The JSON documents `Repository` hands out that the CLI prints too (diff)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from git_theta.git.repo import Repo

__all__ = ["diff_document"]


def diff_document(
    repo: Repo,
    old: tuple[str | None, str | None],
    new: tuple[str | None, str | None],
    paths: Sequence[str],
    *,
    params: Sequence[str],
    unchanged: bool,
) -> dict[str, Any]:
    """`git theta diff --format json`'s document between `old` and `new`, each (the revision
    as the user named it, its commit), or (None, None): the index for `old`; for `new`, the
    index after a revision and the work tree after the index."""
    from git_theta.diffing.compare import CompareOptions, raise_for_missing
    from git_theta.diffing.render import to_json
    from git_theta.diffing.revisions import INDEX, WORKTREE, Endpoint, diff_endpoints

    old_end = INDEX if old[0] is None else Endpoint(old[0], old[1])
    if new[0] is not None:
        new_end = Endpoint(new[0], new[1])
    else:
        new_end = WORKTREE if old[0] is None else INDEX
    options = CompareOptions(params=tuple(params), unchanged=unchanged)
    compared = diff_endpoints(repo, old_end, new_end, list(paths), options)
    raise_for_missing(compared.report.files)
    return dict(json.loads(to_json(compared.report)))
