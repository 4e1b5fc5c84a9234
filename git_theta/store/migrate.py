"""Moving a repository's objects out of Git LFS's directory, once.

Until the store had its own place, git-theta kept its objects in `<common>/lfs/objects/ab/cd/<oid>`
among Git LFS's own, where `git lfs prune` takes them for garbage. On first use a repository's
git-theta objects there (recognised by their header, git_theta/store/serialize.py) are moved
into the store; Git LFS's objects are never touched. Until that has finished, reads fall back to
the old place (ObjectStore's `legacy_dir`).

Safe when interrupted or run by two processes at once: each object is hard-linked into the store
(which never overwrites an object already there) and then unlinked from the old place, so at
every moment it is in one place or both. A marker file records that the move finished, so later
starts cost one `stat`.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import time
from pathlib import Path
from typing import NamedTuple

from git_theta.errors import CorruptObjectError, GitThetaError
from git_theta.metadata import ObjectRef
from git_theta.store.objects import TMP_PREFIX, ObjectStore
from git_theta.store.serialize import MAX_HEADER_BYTES, read_header

__all__ = ["MARKER", "Migration", "legacy_dir", "migrate", "migrate_if_pending", "pending"]

# In `<common>/theta/` whatever the store's place: the move is per repository, and a store
# shared through `theta.storage` may serve repositories that have not moved yet.
MARKER = Path("theta") / "migrated-from-lfs"
LEGACY_OBJECTS = Path("lfs") / "objects"
LEGACY_TMP = Path("lfs") / "tmp"
# Temp files of a write that was killed; a live write finishes far sooner than this.
STALE_TMP_SECONDS = 3600
_SHARD = re.compile(r"[0-9a-f]{2}")
_OID = re.compile(r"[0-9a-f]{64}")
# Keys every git-theta object header has; a Git LFS object that happens to start with a
# msgpack map will not have these.
_HEADER_KEYS = ("dtype", "shape", "codec")
# msgpack's first byte of a map: fixmap (0x80-0x8f), map 16 (0xde), map 32 (0xdf).
_MAP_STARTS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
# Enough for the header of any tensor of up to a few dozen dimensions.
FIRST_READ_BYTES = 4096


class Migration(NamedTuple):
    """What one run moved: objects moved, objects left (could not be moved), temp files removed."""

    moved: int
    left: int
    temp_removed: int


def legacy_dir(common_dir: Path) -> Path:
    """`<common>/lfs/objects`: where git-theta kept its objects before the store had its own place."""
    return common_dir / LEGACY_OBJECTS


def pending(common_dir: Path) -> bool:
    """Whether the repository may still hold objects in the old place (cheap: one or two stats)."""
    return not (common_dir / MARKER).exists() and legacy_dir(common_dir).is_dir()


def migrate(store: ObjectStore, common_dir: Path, *, now: float | None = None) -> Migration:
    """Move git-theta's objects from `<common>/lfs/objects` into `store`, remove its stale temp
    files from `<common>/lfs/tmp`, and mark the repository migrated if nothing was left behind.

    Objects that cannot be moved (a full disk, permissions) stay where they are and reads keep
    finding them there; the next start tries again.
    """
    moved = left = 0
    old = legacy_dir(common_dir)
    for path in _candidates(old):
        try:
            if not _is_ours(path):
                continue
            if _move(store, path):
                moved += 1
        except (OSError, GitThetaError):
            left += 1
    removed = _remove_stale_temps(common_dir / LEGACY_TMP, now if now is not None else time.time())
    if left == 0:
        try:
            marker = common_dir / MARKER
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(
                "git-theta moved its objects out of lfs/objects; delete this file to look again\n",
                encoding="utf-8",
            )
        except OSError:
            pass  # not fatal: the next start looks again (and finds nothing to move)
    return Migration(moved, left, removed)


def migrate_if_pending(store: ObjectStore, common_dir: Path) -> None:
    """The start-up hook: migrate when needed, warn on stderr when objects were left behind."""
    if not pending(common_dir):
        return
    result = migrate(store, common_dir)
    if result.left:
        sys.stderr.write(
            f"git-theta: warning: {result.left} object(s) could not be moved from "
            f"{legacy_dir(common_dir)} to {store.objects_dir}; they are still read from there, "
            "and the next git-theta command tries again\n"
        )
    else:
        store.legacy_dir = None


def _candidates(old: Path) -> list[Path]:
    """Files named like objects in the `ab/cd/<oid>` layout under `old`."""
    found = []
    try:
        for first in os.scandir(old):
            if not (_SHARD.fullmatch(first.name) and first.is_dir(follow_symlinks=False)):
                continue
            for second in os.scandir(first.path):
                if not (_SHARD.fullmatch(second.name) and second.is_dir(follow_symlinks=False)):
                    continue
                for entry in os.scandir(second.path):
                    if (
                        _OID.fullmatch(entry.name)
                        and entry.name.startswith(first.name + second.name)
                        and entry.is_file(follow_symlinks=False)
                    ):
                        found.append(Path(entry.path))
    except FileNotFoundError:
        pass  # a directory removed while we looked: nothing there to move
    return found


def _is_ours(path: Path) -> bool:
    """Whether the file starts with a git-theta object header (Git LFS's objects do not).

    Reads a few bytes of most files: a Hugging Face repository's Git LFS store can hold
    thousands of large files, and only a msgpack map can start one of ours.
    """
    try:
        with path.open("rb") as f:
            head = f.read(FIRST_READ_BYTES)
            if not head or head[0] not in _MAP_STARTS:
                return False
            try:
                header = read_header(head)
            except CorruptObjectError:
                # a long header (a tensor of many dimensions) ends past the first read
                header = read_header(head + f.read(MAX_HEADER_BYTES - len(head)))
    except FileNotFoundError:
        return False  # another process moved it
    except (CorruptObjectError, ValueError):
        return False
    return all(key in header for key in _HEADER_KEYS)


def _move(store: ObjectStore, path: Path) -> bool:
    """Put the object at `path` into `store` and remove it from the old place.

    A hard link, then an unlink: the object is in one place or both at every moment, and an
    object already in the store is never replaced. Across file systems (`theta.storage` on
    another disk) it is copied, verified against its name, instead.
    """
    oid = path.name
    target = store.path(oid)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except FileNotFoundError:
        return False  # another process moved it first
    except FileExistsError:
        pass  # already in the store (moved by another process, or fetched again)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        if not _copy(store, path, oid):
            return False
    path.unlink(missing_ok=True)
    return True


def _copy(store: ObjectStore, path: Path, oid: str) -> bool:
    """Copy, verified; False when the old copy vanished or is corrupt (then it stays where it
    is: no worse than before, and `git theta fsck` reports the object)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            store.put(iter(lambda: f.read(1 << 20), b""), expected=ObjectRef(oid, size))
    except (FileNotFoundError, CorruptObjectError):
        return False
    return True


def _remove_stale_temps(tmp: Path, now: float) -> int:
    """Remove git-theta's temp files (`object-*`) older than STALE_TMP_SECONDS from Git LFS's
    tmp dir; Git LFS's own temp files are left alone."""
    removed = 0
    try:
        entries = list(os.scandir(tmp))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        try:
            if (
                entry.name.startswith(TMP_PREFIX)
                and entry.is_file(follow_symlinks=False)
                and now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS
            ):
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
        except OSError:
            continue  # not ours to insist on; the next run tries again
    return removed
