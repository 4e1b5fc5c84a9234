"""What a stopped merge left conflicted, per parameter: ours (index stage 2) against theirs
(stage 3) for each tracked checkpoint that is unmerged.

`git diff` during a conflict prints a combined diff (`diff --cc`); a checkpoint's work tree
file holds our version, so git shows only the header. `git theta diff` without revisions
shows this comparison instead, which names the parameters both sides changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from git_theta import metadata as md
from git_theta.diffing.compare import CompareOptions, compare
from git_theta.diffing.records import DiffReport
from git_theta.diffing.sides import side_from_bytes
from git_theta.git.repo import Repo
from git_theta.store import open_store

__all__ = ["OURS", "THEIRS", "both_changed", "conflict_report", "unmerged_checkpoints"]

OURS = "ours (:2)"
THEIRS = "theirs (:3)"


def unmerged_checkpoints(repo: Repo, pathspecs: Sequence[str] = ()) -> list[str]:
    """Unmerged paths that git-theta tracks, in index order."""
    out = repo.git("ls-files", "-u", "-z", "--", *pathspecs).decode("utf-8", "surrogateescape")
    paths = list(dict.fromkeys(r.split("\t", 1)[1] for r in out.split("\0") if "\t" in r))
    attrs = repo.check_attrs(["diff", "filter"], paths)
    return [p for p in paths if "theta" in (attrs[p].get("diff"), attrs[p].get("filter"))]


def conflict_report(
    repo: Repo, paths: Sequence[str], options: CompareOptions | None = None
) -> DiffReport:
    """Ours -> theirs for each of `paths` (a side missing at a stage: added or deleted)."""
    store = open_store(repo)
    files = []
    for path in paths:
        sides = []
        for stage in ("2", "3"):
            blob = repo.read_current_blob(f":{stage}:{path}")
            sides.append(
                None
                if blob is None
                else side_from_bytes(
                    blob, path=path, label=f":{stage}:{path}", store=store, repo=repo
                )
            )
        files.append(compare(path, sides[0], sides[1], options))
    return DiffReport(OURS, THEIRS, tuple(files))


def _hashes(repo: Repo, spec: str) -> dict[str, str] | None:
    blob = repo.read_current_blob(spec)
    if blob is None or not md.looks_like_metadata(blob[: len(md.MAGIC)]):
        return None
    return {n: e.hash for n, e in md.decode(blob, source=spec).params.items()}


def both_changed(repo: Repo, path: str) -> list[str]:
    """The parameters of `path` that ours and theirs changed differently from the merge base
    (a parameter absent from a version counts as changed there)."""
    base, ours, theirs = (_hashes(repo, f":{stage}:{path}") for stage in ("1", "2", "3"))
    if ours is None or theirs is None:
        return []
    base = base or {}
    return sorted(
        n
        for n in ours.keys() | theirs.keys()
        if ours.get(n) != theirs.get(n)
        and ours.get(n) != base.get(n)
        and theirs.get(n) != base.get(n)
    )
