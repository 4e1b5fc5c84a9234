"""`git theta similar [REV] [--to REV... | --branches | --all]`: which revisions' task vectors
point the way REV's does.

Each revision's task vector is its checkpoint minus the base (`--base`, else its merge base
with REV); revisions are ranked by the cosine of theirs with REV's, over every parameter and
per group of parameters. The math is in git_theta/similarity/.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from git_theta.context import RepoContext
from git_theta.errors import ConfigError
from git_theta.git.repo import Repo
from git_theta.similarity.ranking import Comparison, compare
from git_theta.similarity.render import rank, to_json, to_markdown, to_text

__all__ = ["FORMATS", "candidates", "checkpoint_paths", "similar", "similar_revisions"]

FORMATS = ("text", "json", "markdown")


def candidates(repo: Repo, target_commit: str, *, everything: bool) -> list[str]:
    """Local branches (with `everything`: also remote-tracking branches and tags), one name
    per commit, without those at the target's commit."""
    refs = ["refs/heads/"] + (["refs/remotes/", "refs/tags/"] if everything else [])
    raw = repo.git("for-each-ref", "--format=%(objectname) %(*objectname) %(refname:short)", *refs)
    seen = {target_commit}
    names = []
    for line in raw.decode("utf-8", "surrogateescape").splitlines():
        parts = line.split(" ")
        oid, peeled, name = parts[0], parts[1], " ".join(parts[2:])
        commit = peeled or oid
        if name.endswith("/HEAD") or commit in seen:
            continue
        seen.add(commit)
        names.append(name)
    return names


def checkpoint_paths(repo: Repo, target_commit: str, paths: Sequence[str]) -> list[str]:
    """`paths`, else every checkpoint tracked in the target but Fisher files."""
    if paths:
        return list(paths)
    from git_theta.commands.ls_files import list_checkpoints

    found = [
        p for p, _ in list_checkpoints(repo, target_commit) if ".fisher." not in p.rsplit("/")[-1]
    ]
    if not found:
        raise ConfigError(f"{target_commit[:12]} has no checkpoint tracked by git-theta")
    return found


def similar_revisions(
    session: RepoContext,
    target: str,
    *,
    to: Sequence[str] = (),
    everything: bool = False,
    base: str | None = None,
    paths: Sequence[str] = (),
    params: Sequence[str] = (),
    fisher: bool = False,
) -> tuple[list[str], list[Comparison]]:
    """The checkpoint paths compared and the revisions ranked, most similar first.

    Raises:
        RevisionError: `target` or `base` names no commit.
        ConfigError: the target tracks no checkpoint.
    """
    from git_theta.similarity.ranking import resolve_commit

    commit = resolve_commit(session, target)
    others = list(to) or candidates(session.repo, commit, everything=everything)
    chosen = checkpoint_paths(session.repo, commit, paths)
    found = compare(session, target, others, paths=chosen, base=base, params=params, fisher=fisher)
    return chosen, rank(found)


def similar(
    target: str,
    *,
    to: Sequence[str] = (),
    everything: bool = False,
    base: str | None = None,
    paths: Sequence[str] = (),
    params: Sequence[str] = (),
    top: int | None = None,
    fmt: str = "text",
    groups: bool = False,
    fisher: bool = False,
    out: TextIO,
) -> int:
    """Print the revisions ranked by similarity to `target` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (valid: {', '.join(FORMATS)})")
    if top is not None and top < 1:
        raise ConfigError("--top must be at least 1")
    with RepoContext(Repo()) as session:
        chosen, ranked = similar_revisions(
            session,
            target,
            to=to,
            everything=everything,
            base=base,
            paths=paths,
            params=params,
            fisher=fisher,
        )
    shown = ranked[:top] if top else ranked
    if fmt == "json":
        out.write(to_json(target, chosen, shown))
    elif fmt == "markdown":
        out.write(to_markdown(target, chosen, shown))
    else:
        out.write(to_text(target, chosen, shown, groups))
    return 0
