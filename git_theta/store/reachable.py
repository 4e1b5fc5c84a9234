"""Which versions of tracked checkpoints a repository still references, and from where.

A version is one metadata blob; the objects it names are the ones its checkout needs. The roots
are the ones Git's own gc counts: every ref (branches, tags, remote-tracking refs, the stash,
notes) and each work tree's HEAD (`--all`), every reflog entry (`--reflog`), the index of every
work tree with its conflict stages (`--indexed-objects`; git examines all work trees for these
three since 2.15), and the commits an in-progress merge, cherry-pick, revert or rebase holds
(MERGE_HEAD, ORIG_HEAD, rebase-merge/..., read from each work tree's git dir). Commits that
nothing references any more but that are still in git's object database and newer than a grace
period count too (Git keeps them for `gc.pruneExpire`; `git gc --prune=now` removes them).

Git is asked in batches: one `rev-list` for the history, one for the indexes, one `cat-file
--batch-check` and one `cat-file --batch` for the metadata blobs (git_theta/transfer/objects_in.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from git_theta import metadata as md
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.transfer.objects_in import metadata_blobs

__all__ = [
    "INDEX",
    "Use",
    "Version",
    "all_versions",
    "commits_since",
    "index_versions",
    "pending_commits",
    "snapshot_versions",
    "unreachable_commits_since",
    "versions",
]

INDEX = ""  # the `commit` of a version that only an index holds
# Files in a work tree's git dir that name commits an operation in progress still needs.
PSEUDO_REFS = (
    "MERGE_HEAD",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "REBASE_HEAD",
    "ORIG_HEAD",
    "AUTO_MERGE",
    "BISECT_HEAD",
)
# Directories of an interrupted rebase; their files of full object ids are roots (the todo
# lists hold abbreviated ids of commits that the files of full ids or the reflog keep anyway).
REBASE_DIRS = ("rebase-merge", "rebase-apply", "sequencer")
_FULL_OID = re.compile(rb"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class Use(NamedTuple):
    """One object as one parameter of a version uses it.

    Attributes:
        name: the parameter ("(layout)" for the format's layout object).
        ref: the object (a whole pack for a packed tensor).
        content_hash: the content hash the object (or its member) must decode to (a dense
            entry), else None.
        member: (offset, length) of the parameter's own object inside the pack `ref`, if any.
    """

    name: str
    ref: ObjectRef
    content_hash: str | None
    member: tuple[int, int] | None = None


@dataclass(frozen=True)
class Version:
    """One version of a tracked checkpoint: a metadata blob, its path and a commit holding it.

    Attributes:
        commit: the first commit git's walk reached it in (the newest holding it), or INDEX.
    """

    blob: str
    path: str
    commit: str
    meta: md.Metadata

    @property
    def where(self) -> str:
        """`commit 1a2b3c4` or `index`, for messages."""
        return f"commit {self.commit[:7]}" if self.commit else "index"

    def uses(self) -> Iterator[Use]:
        """Every object the version needs, once per parameter, layout first."""
        entries = [("(layout)", self.meta.layout)] if self.meta.layout else []
        for name, entry in [*entries, *sorted(self.meta.params.items())]:
            dense = None if entry.updates else entry.hash
            base = entry.object
            member = None if base.length is None else (base.offset or 0, base.length)
            for ref in entry.objects():
                if ref == base.whole:
                    yield Use(name, ref, dense, member)
                else:
                    yield Use(name, ref, None)


def versions(repo: Repo, args: Sequence[str], *, commit: str | None = None) -> list[Version]:
    """The versions `git rev-list --objects --in-commit-order ARGS` reaches, each named by the
    first commit the walk reached it in (`commit`, when given, names them all)."""
    if not args:
        return []
    out = repo.git("rev-list", "--objects", "--in-commit-order", *args)
    blobs: dict[str, tuple[str, str]] = {}
    current = commit or INDEX
    for line in out.decode("utf-8", "replace").splitlines():
        oid, space, path = line.partition(" ")
        if not space:  # commits have no name; trees and blobs do (the root tree has "")
            current = commit if commit is not None else oid
        elif path:
            blobs.setdefault(oid, (path, current))
    metas = metadata_blobs(repo, {oid: path for oid, (path, _) in blobs.items()})
    return [Version(oid, blobs[oid][0], blobs[oid][1], meta) for oid, meta in metas.items()]


def snapshot_versions(repo: Repo, commits: Sequence[str]) -> list[Version]:
    """The versions in the trees of `commits` (what checking each out needs; no history)."""
    return versions(repo, ["--no-walk=unsorted", *commits]) if commits else []


def index_versions(repo: Repo) -> list[Version]:
    """The versions staged in the index of every work tree, conflict stages included."""
    return versions(repo, ["--indexed-objects"], commit=INDEX)


def pending_commits(repo: Repo) -> list[str]:
    """Commits an in-progress merge, cherry-pick, revert, rebase or bisect in any work tree
    names (they exist in the object database; anything else is dropped)."""
    gitdirs = [repo.common_dir, *sorted((repo.common_dir / "worktrees").glob("*"))]
    found: list[str] = []
    for gitdir in gitdirs:
        files = [gitdir / name for name in PSEUDO_REFS]
        for sub in REBASE_DIRS:
            files += sorted(p for p in (gitdir / sub).glob("*") if p.is_file())
        for path in files:
            found += _full_oids(path)
    return _existing_commits(repo, dict.fromkeys(found))


def commits_since(repo: Repo, args: Sequence[str], since: float) -> list[str]:
    """Commits reachable from ARGS (rev-list arguments) committed at or after `since`."""
    out = repo.git("rev-list", f"--since={int(since)}", *args)
    return out.decode().split()


def unreachable_commits_since(repo: Repo, since: float) -> list[str]:
    """Commits still in git's object database that no root references, committed at or after
    `since` (a reset-away commit before `git gc --prune=now` removed it)."""
    proc = repo.git(
        "fsck", "--unreachable", "--connectivity-only", "--no-progress", check=False
    ).decode()
    commits = [
        line.split()[2] for line in proc.splitlines() if line.startswith("unreachable commit")
    ]
    if not commits:
        return []
    out = repo.git(
        "log", "--no-walk=unsorted", "--stdin", "--format=%H %ct", input="\n".join(commits).encode()
    )
    recent = []
    for line in out.decode().splitlines():
        oid, _, when = line.partition(" ")
        if when.isdigit() and int(when) >= since:
            recent.append(oid)
    return recent


def all_versions(repo: Repo, *, grace_since: float | None = None) -> list[Version]:
    """Every version any root references: refs, reflogs, indexes, operations in progress and,
    with `grace_since`, unreachable commits committed since then. One entry per blob."""
    roots = ["--all", "--reflog", *pending_commits(repo)]
    if grace_since is not None:
        roots += unreachable_commits_since(repo, grace_since)
    return unique([*versions(repo, roots), *index_versions(repo)])


def unique(found: Iterable[Version]) -> list[Version]:
    """One version per blob, the first seen."""
    seen: dict[str, Version] = {}
    for version in found:
        seen.setdefault(version.blob, version)
    return list(seen.values())


def _full_oids(path: Path) -> list[str]:
    try:
        data = path.read_bytes()[:4096]  # these files hold a few ids; a big one is not ours
    except OSError:
        return []
    return [tok.decode() for tok in data.split() if _FULL_OID.match(tok)]


def _existing_commits(repo: Repo, oids: Iterable[str]) -> list[str]:
    wanted = list(oids)
    if not wanted:
        return []
    out = repo.git(
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        input="".join(f"{o}\n" for o in wanted).encode(),
    )
    return [
        parts[0]
        for parts in (line.split() for line in out.decode().splitlines())
        if len(parts) == 2 and parts[1] == "commit"
    ]
