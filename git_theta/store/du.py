"""`git theta du`: what the store holds, per tracked checkpoint and per version.

For each version (one metadata blob, named by a commit holding it or `index`) and each
checkpoint (path):

- raw_bytes: the size of the checkpoint a checkout writes (its tensors' bytes plus the format's
  layout; for a checkpoint row, summed over its versions);
- stored_bytes: the bytes of the distinct objects it names that are in the store;
- shared_bytes: the part of stored_bytes whose objects other versions (for a version) or other
  paths (for a checkpoint) name too;
- missing_objects: objects it names that the store lacks (on the remote only).

The totals count each object once: the whole store, the part any version names, and what
`git theta prune` (default rules) would reclaim.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from git_theta.errors import GitError, RevisionError, StoreError
from git_theta.git.repo import Repo
from git_theta.store.objects import ObjectStore
from git_theta.store.prune import PrunePlan, plan_prune
from git_theta.store.reachable import Version, all_versions, unique, versions

__all__ = ["DU_FORMAT_VERSION", "Usage", "disk_usage"]

DU_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Usage:
    """One row: a version or a checkpoint."""

    path: str
    commit: str
    versions: int
    objects: int
    missing_objects: int
    raw_bytes: int
    stored_bytes: int
    shared_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "commit": self.commit,
            "versions": self.versions,
            "objects": self.objects,
            "missing_objects": self.missing_objects,
            "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes,
            "shared_bytes": self.shared_bytes,
        }


def _raw_bytes(version: Version) -> int:
    layout = version.meta.layout.nbytes if version.meta.layout else 0
    return layout + sum(entry.nbytes for entry in version.meta.params.values())


def disk_usage(repo: Repo, store: ObjectStore, revs: Sequence[str] = ()) -> dict[str, Any]:
    """The report as a JSON-ready dict (`DU_FORMAT_VERSION`; keys documented in README).

    Args:
        revs: rev-list arguments whose history's versions to list (default: every version
            any ref, reflog, index or operation in progress references).
    """
    try:
        found = unique(versions(repo, list(revs))) if revs else all_versions(repo)
    except GitError as exc:
        if not revs:
            raise
        raise RevisionError(exc.cmd, exc.returncode, exc.stderr) from None  # git's own line
    index = _Index.of(store, found)
    rows = [
        index.row(v.path, v.commit, [i], lambda o: len(index.versions_of[o]) > 1)
        for i, v in enumerate(found)
    ]
    paths: dict[str, list[int]] = defaultdict(list)
    for i, v in enumerate(found):
        paths[v.path].append(i)
    checkpoints = [
        index.row(path, "", members, lambda o, p=path: len(index.paths_of[o] - {p}) > 0)
        for path, members in sorted(paths.items())
    ]
    total_objects, total_bytes = _store_totals(store)
    sizes = index.sizes
    referenced = [o for o, size in sizes.items() if size is not None]
    return {
        "version": DU_FORMAT_VERSION,
        "store": str(store.root),
        "versions": [r.to_json() for r in rows],
        "checkpoints": [r.to_json() for r in checkpoints],
        "total": {
            "objects": total_objects,
            "stored_bytes": total_bytes,
            "referenced_objects": len(referenced),
            "referenced_bytes": sum(sizes[o] or 0 for o in referenced),
        },
        "prune": _prune_summary(repo, store),
    }


@dataclass
class _Index:
    """Which objects each version names, and the versions, paths and store size of each."""

    found: list[Version]
    sizes: dict[str, int | None]  # None: not in the store
    objects_of: list[set[str]]
    versions_of: dict[str, set[int]]
    paths_of: dict[str, set[str]]

    @classmethod
    def of(cls, store: ObjectStore, found: list[Version]) -> _Index:
        index = cls(found, {}, [], defaultdict(set), defaultdict(set))
        for i, version in enumerate(found):
            oids = set()
            for use in version.uses():
                oids.add(use.ref.oid)
                if use.ref.oid not in index.sizes:
                    index.sizes[use.ref.oid] = _size(store, use.ref.oid)
                index.versions_of[use.ref.oid].add(i)
                index.paths_of[use.ref.oid].add(version.path)
            index.objects_of.append(oids)
        return index

    def row(self, path: str, commit: str, members: list[int], shared: Any) -> Usage:
        sizes = self.sizes
        oids = set().union(*(self.objects_of[i] for i in members))
        present = [o for o in oids if sizes[o] is not None]
        return Usage(
            path=path,
            commit=commit,
            versions=len(members),
            objects=len(oids),
            missing_objects=len(oids) - len(present),
            raw_bytes=sum(_raw_bytes(self.found[i]) for i in members),
            stored_bytes=sum(sizes[o] or 0 for o in present),
            shared_bytes=sum(sizes[o] or 0 for o in present if shared(o)),
        )


def _prune_summary(repo: Repo, store: ObjectStore) -> dict[str, int] | None:
    """What `git theta prune` would reclaim; None for a shared store, which prune refuses."""
    try:
        plan: PrunePlan = plan_prune(repo, store)
    except StoreError:
        return None
    return {
        "objects": len(plan.objects),
        "bytes": plan.object_bytes,
        "temp_files": len(plan.tmp),
        "temp_bytes": plan.tmp_bytes,
        "kept_fresh": plan.kept_fresh,
    }


def _size(store: ObjectStore, oid: str) -> int | None:
    try:
        return store.path(oid).stat().st_size
    except FileNotFoundError:
        return None


def _store_totals(store: ObjectStore) -> tuple[int, int]:
    count = nbytes = 0
    if store.objects_dir.is_dir():
        for path in store.objects_dir.glob("*/*/*"):
            if path.is_file():
                count += 1
                nbytes += path.stat().st_size
    return count, nbytes
