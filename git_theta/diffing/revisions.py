"""Which two versions to compare, and which tracked checkpoints differ between them.

An endpoint is a revision, the index or the work tree, as in `git diff`:

    (no revision)    index        -> work tree
    REV              REV          -> work tree
    REV1 REV2        REV1         -> REV2
    REV1..REV2       REV1         -> REV2     (an empty side is HEAD)
    REV1...REV2      merge base   -> REV2

Files come from git's plumbing (`diff-tree`, `diff-index`, `diff-files`), which re-hashes
nothing; a checkpoint is ours when its `diff` or `filter` attribute is `theta`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from git_theta.diffing.compare import CompareOptions, compare
from git_theta.diffing.records import DiffReport, FileDiff
from git_theta.diffing.shards import group_shards
from git_theta.diffing.sides import Side, side_from_bytes, side_from_file
from git_theta.errors import ConfigError, MetadataError
from git_theta.git.repo import RawChange, Repo
from git_theta.store import ObjectStore, open_store

__all__ = [
    "Endpoint",
    "INDEX",
    "WORKTREE",
    "Comparison",
    "diff_endpoints",
    "parse_range",
    "parse_revisions",
]

_THETA = "theta"
# Symlinks and submodules are never checkpoints, whatever the attributes say.
_NOT_FILES = ("120000", "160000")


@dataclass(frozen=True)
class Endpoint:
    """A revision (`rev` set), the index or the work tree; `label` is how messages name it."""

    label: str
    rev: str | None = None


INDEX = Endpoint("index")
WORKTREE = Endpoint("working tree")


def _rev(rev: str) -> Endpoint:
    return Endpoint(rev, rev)


def _split_range(repo: Repo, text: str) -> tuple[Endpoint, Endpoint] | None:
    for sep in ("...", ".."):
        if sep in text:
            left, right = (part or "HEAD" for part in text.split(sep, 1))
            if sep == "...":
                base = repo.merge_base(left, right)
                return Endpoint(f"{left}...{right} (merge base)", base), _rev(right)
            return _rev(left), _rev(right)
    return None


def parse_revisions(
    repo: Repo, revs: Sequence[str], *, cached: bool = False
) -> tuple[Endpoint, Endpoint]:
    """`git theta diff`'s revisions, read as `git diff` reads them (see the module doc).

    `cached` (`--cached`/`--staged`): REV (default HEAD; before a first commit, the empty
    tree) -> index, as `git diff --cached [REV]`.

    Raises:
        ConfigError: more than two revisions, or more than one with `cached`.
    """
    if cached:
        if len(revs) > 1:
            raise ConfigError(
                f"--cached compares one revision with the index, got {len(revs)}: {' '.join(revs)}"
            )
        if revs:
            return _rev(revs[0]), INDEX
        if repo.has_commit("HEAD"):
            return _rev("HEAD"), INDEX
        return Endpoint("(no commits yet)", repo.empty_tree()), INDEX
    if not revs:
        return INDEX, WORKTREE
    if len(revs) == 1:
        return _split_range(repo, revs[0]) or (_rev(revs[0]), WORKTREE)
    if len(revs) == 2:
        return _rev(revs[0]), _rev(revs[1])
    raise ConfigError(f"at most two revisions can be compared, got {len(revs)}: {' '.join(revs)}")


def parse_range(repo: Repo, text: str | None) -> tuple[Endpoint, Endpoint]:
    """`git theta check`'s range: none is HEAD -> index (what a commit would record), REV is
    REV -> HEAD, and `A..B` / `A...B` as for diff."""
    if text is None:
        if repo.has_commit("HEAD"):
            return _rev("HEAD"), INDEX
        return Endpoint("(no commits yet)", repo.empty_tree()), INDEX
    return _split_range(repo, text) or (_rev(text), _rev("HEAD"))


@dataclass(frozen=True)
class Comparison:
    """What `diff_endpoints` found: the checkpoints compared, and the other paths that
    changed (which git's own diff shows)."""

    report: DiffReport
    plain_paths: tuple[str, ...]


def _raw_changes(
    repo: Repo, old: Endpoint, new: Endpoint, pathspecs: Sequence[str]
) -> list[RawChange]:
    if old.rev is not None and new.rev is not None:
        return repo.raw_diff(old.rev, new.rev, pathspecs)
    if old.rev is not None:
        return repo.raw_diff(old.rev, None, pathspecs, cached=new is INDEX)
    if old is INDEX and new is WORKTREE:
        return repo.raw_diff(None, None, pathspecs)
    raise ConfigError(f"cannot compare the {old.label} with the {new.label}")


def _side(
    repo: Repo,
    store: ObjectStore,
    end: Endpoint,
    path: str,
    oid: str | None,
    blobs: dict[str, bytes],
) -> Side | None:
    label = f"{end.rev}:{path}" if end.rev else f"{end.label}:{path}"
    if oid is not None:
        if oid not in blobs:
            raise MetadataError(f"{label}: blob {oid} cannot be read from the repository")
        return side_from_bytes(blobs[oid], path=path, label=label, store=store, repo=repo)
    file = repo.worktree / path
    if not os.path.lexists(file):
        return None
    return side_from_file(file, path=path, label=label, store=store, repo=repo)


def diff_endpoints(
    repo: Repo,
    old: Endpoint,
    new: Endpoint,
    pathspecs: Sequence[str] = (),
    options: CompareOptions | None = None,
) -> Comparison:
    """Compare every tracked checkpoint that differs between two endpoints.

    `pathspecs` are relative to the work tree root (see Repo.root_pathspecs). Checkpoints
    whose parameters all turn out unchanged (a work tree file that was only touched) are
    left out of the report.

    Raises:
        RevisionError: a revision does not exist (git's own message).
    """
    changes = _raw_changes(repo, old, new, pathspecs)
    attrs = repo.check_attrs(["diff", "filter"], [c.path for c in changes])
    ours: list[RawChange] = []
    plain: list[str] = []
    for change in changes:
        attr = attrs[change.path]
        if (
            _THETA in (attr.get("diff"), attr.get("filter"))
            and change.status != "U"
            and not {change.old_mode, change.new_mode} & set(_NOT_FILES)
        ):
            ours.append(change)
        else:
            plain.append(change.path)
    # Every metadata blob in one `git cat-file --batch` (only ours: others may be large).
    all_blobs = repo.read_blobs(
        [oid for c in ours for oid in (c.old_oid, c.new_oid) if oid is not None]
    )
    store = open_store(repo)
    files: list[FileDiff] = []
    for change in ours:
        old_side = (
            None
            if change.status == "A"
            else _side(repo, store, old, change.path, change.old_oid, all_blobs)
        )
        new_side = (
            None
            if change.status == "D"
            else _side(repo, store, new, change.path, change.new_oid, all_blobs)
        )
        if old_side is None and new_side is None:
            continue
        result = compare(change.path, old_side, new_side, options or CompareOptions())
        if result.changed:
            files.append(result)
    # The shards of one sharded checkpoint are one model (a tensor moved between them is moved).
    grouped = group_shards(files)
    return Comparison(DiffReport(old.label, new.label, grouped), tuple(plain))
