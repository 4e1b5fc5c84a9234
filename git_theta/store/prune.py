"""`git theta prune`: delete objects nothing needs, with Git's safety rules.

What is kept (every rule holds on its own):

1. Every object a reachable version names (git_theta/store/reachable.py): any ref, any reflog
   entry, any work tree's index (conflict stages too), the stash, an operation in progress.
2. Every object of a commit committed within the grace period (`--recent DAYS`, default
   DEFAULT_RECENT_DAYS), even one nothing references any more (still in git's object database).
3. Every object file modified within FRESH_OBJECT_SECONDS. A `git add` writes its objects before
   git writes the index that names them, and `ObjectStore.put` touches an object it finds
   present, so an object that a running git command has just written or reused is never taken.
4. With `--verify-remote`, objects that only older versions reference may go as well, but only
   those the remote's batch API says it holds; never an object of a version that is current
   (a ref's tip, a work tree's HEAD, an index, a stash entry, an operation in progress), of an
   unpushed commit (not reachable from a remote-tracking ref) or of a commit within the grace
   period.

Files that are not objects (a name other than 64 hex digits) are never touched, nor is
`<store>/bad/` (fsck's evidence; delete it by hand). Temporary files in `<store>/tmp` untouched
for STALE_TMP_SECONDS (what a killed `git add` leaves) are removed.

A store that `theta.storage` names may be shared by other repositories, whose references prune
cannot see: prune refuses to run on it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from git_theta import settings
from git_theta.errors import StoreError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store.fsck import default_tips
from git_theta.store.location import STORAGE_KEY
from git_theta.store.objects import ObjectStore
from git_theta.store.reachable import (
    Version,
    all_versions,
    commits_since,
    index_versions,
    snapshot_versions,
    unique,
    unreachable_commits_since,
    versions,
)

__all__ = [
    "DEFAULT_RECENT_DAYS",
    "FRESH_OBJECT_SECONDS",
    "STALE_TMP_SECONDS",
    "PrunePlan",
    "delete",
    "plan_prune",
    "referenced_oids",
]

# Like Git LFS's lfs.pruneoffsetdays: commits this recent keep their objects whatever else holds.
DEFAULT_RECENT_DAYS = 3.0
# Longer than any one git command takes between writing an object and writing the index that
# names it (an add of a checkpoint of several hundred GB included).
FRESH_OBJECT_SECONDS = 24 * 3600
# A temp file someone is writing is modified all the time; one untouched for an hour is left
# over from a killed process.
STALE_TMP_SECONDS = 3600
ASIDE_PREFIX = "prune-"  # objects on their way out, in <store>/tmp
_OID = re.compile(r"^[0-9a-f]{64}$")
DAY = 86400.0

RemoteHas = Callable[[Sequence[ObjectRef]], set[str]]


@dataclass
class PrunePlan:
    """What prune would delete, and what it keeps for which reason.

    Attributes:
        objects: (path, size) of each object to delete.
        tmp: (path, size) of each stale temp file.
        kept_fresh: unreferenced objects kept because they were modified recently.
        kept_unverified: (with --verify-remote) old objects kept because the remote lacks them.
    """

    objects: list[tuple[Path, int]] = field(default_factory=list)
    tmp: list[tuple[Path, int]] = field(default_factory=list)
    kept_fresh: int = 0
    kept_unverified: int = 0

    @property
    def object_bytes(self) -> int:
        return sum(size for _, size in self.objects)

    @property
    def tmp_bytes(self) -> int:
        return sum(size for _, size in self.tmp)


def referenced_oids(found: Sequence[Version]) -> dict[str, ObjectRef]:
    """oid -> ref of every object the versions name."""
    return {use.ref.oid: use.ref for version in found for use in version.uses()}


def plan_prune(
    repo: Repo,
    store: ObjectStore,
    *,
    recent_days: float = DEFAULT_RECENT_DAYS,
    remote_has: RemoteHas | None = None,
    now: float | None = None,
) -> PrunePlan:
    """Decide what to delete (nothing is deleted here).

    Args:
        recent_days: the grace period for commits.
        remote_has: given (--verify-remote), objects that only older versions reference may
            go if this says the remote holds them.

    Raises:
        StoreError: the store is named by `theta.storage` and may be shared.
    """
    if settings.STORAGE.read(repo):
        raise StoreError(
            f"{store.root} is set by {STORAGE_KEY} and may be shared by other repositories, "
            "whose references prune cannot see; nothing was deleted"
        )
    now = time.time() if now is None else now
    since = now - recent_days * DAY
    keep = referenced_oids(all_versions(repo, grace_since=since))
    plan = PrunePlan()
    if remote_has is not None:
        protected = set(referenced_oids(_current_versions(repo, since)))
        old = [ref for oid, ref in keep.items() if oid not in protected]
        held = remote_has(old) if old else set()
        plan.kept_unverified = len(old) - len(held & {ref.oid for ref in old})
        for ref in old:
            if ref.oid in held:
                del keep[ref.oid]
    fresh_since = now - FRESH_OBJECT_SECONDS
    for path, stat in _object_files(store):
        if path.name in keep:
            continue
        if stat.st_mtime >= fresh_since:
            plan.kept_fresh += 1
        else:
            plan.objects.append((path, stat.st_size))
    stale = now - STALE_TMP_SECONDS
    for path in sorted(store.tmp_dir.glob("*")) if store.tmp_dir.is_dir() else []:
        try:
            stat = path.lstat()
        except FileNotFoundError:
            continue
        # An object prune moved aside keeps its old mtime; its rename set the ctime.
        when = stat.st_ctime if path.name.startswith(ASIDE_PREFIX) else stat.st_mtime
        if path.is_file() and when < stale:
            plan.tmp.append((path, stat.st_size))
    return plan


def _current_versions(repo: Repo, since: float) -> list[Version]:
    """Versions --verify-remote never prunes: current ones, unpushed ones, recent ones."""
    tips = default_tips(repo)
    tips += repo.git("for-each-ref", "--format=%(objectname)", "refs/tags").decode().split()
    recent = commits_since(repo, ["--all", "--reflog"], since)
    recent += unreachable_commits_since(repo, since)
    unpushed = versions(repo, ["--all", "--reflog", "--not", "--remotes"])
    return unique(
        [
            *snapshot_versions(repo, list(dict.fromkeys(tips + recent))),
            *index_versions(repo),
            *unpushed,
        ]
    )


def _object_files(store: ObjectStore) -> list[tuple[Path, os.stat_result]]:
    found: list[tuple[Path, os.stat_result]] = []
    if not store.objects_dir.is_dir():
        return found
    for first in sorted(store.objects_dir.iterdir()):
        for second in sorted(first.iterdir()) if first.is_dir() else []:
            for path in sorted(second.iterdir()) if second.is_dir() else []:
                if not _OID.match(path.name) or path != store.path(path.name):
                    continue  # not ours to judge
                try:
                    stat = path.lstat()
                except FileNotFoundError:
                    continue
                if path.is_file():
                    found.append((path, stat))
    return found


def delete(store: ObjectStore, plan: PrunePlan, *, now: float | None = None) -> tuple[int, int]:
    """Delete what `plan` lists; returns (objects deleted, their bytes); stale temp files are
    removed too.

    An object is first renamed into `<store>/tmp` and its mtime looked at again: a `put` that
    touched it between the plan and the rename is seen then, and the object goes back. A `put`
    that comes after the rename finds it gone and writes its own copy. Readers that opened the
    file before keep reading it (unlinking does not disturb an open file).
    """
    now = time.time() if now is None else now
    fresh_since = now - FRESH_OBJECT_SECONDS
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    _recover_aside(store, fresh_since)
    count = nbytes = 0
    for path, _size in plan.objects:
        aside = store.tmp_dir / f"{ASIDE_PREFIX}{path.name}-{os.getpid()}"
        try:
            if path.stat().st_mtime >= fresh_since:
                continue
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        stat = aside.stat()
        if stat.st_mtime >= fresh_since:  # touched by a writer just now: put it back
            try:
                os.link(aside, path)
            except FileExistsError:
                pass  # the writer stored its own copy
            aside.unlink()
            continue
        aside.unlink()
        count += 1
        nbytes += stat.st_size
    for path, _size in plan.tmp:
        path.unlink(missing_ok=True)
    return count, nbytes


def _recover_aside(store: ObjectStore, fresh_since: float) -> None:
    """Put back what an interrupted prune moved aside but had seen touched (fresh mtime)."""
    for aside in store.tmp_dir.glob(f"{ASIDE_PREFIX}*"):
        oid = aside.name[len(ASIDE_PREFIX) :].split("-", 1)[0]
        try:
            if not _OID.match(oid) or aside.stat().st_mtime < fresh_since:
                continue
            store.path(oid).parent.mkdir(parents=True, exist_ok=True)
            os.link(aside, store.path(oid))
        except FileExistsError:
            pass
        except FileNotFoundError:
            continue
        aside.unlink(missing_ok=True)
