"""Where a repository's object store lives.

Our own place in the repository's common git dir, `<common>/theta/objects/ab/cd/<oid>`,
shared by every work tree; never `<common>/lfs/objects`, which Git LFS owns: anything there that
no LFS pointer references is garbage to `git lfs prune`. `git config theta.storage PATH` moves
the store elsewhere (several clones can share one), as `lfs.storage` does for Git LFS; a
relative PATH is taken from the common git dir, `~` is expanded. That directory must exist: a
typo never quietly starts a second, empty store.

Objects of repositories made before the store had its own place are moved out of
`<common>/lfs/objects` on first use (git_theta/store/migrate.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from git_theta import settings
from git_theta.errors import ConfigError, StoreWriteError
from git_theta.git.repo import Repo
from git_theta.limits import MAX_OBJECT_BYTES_KEY, parse_size
from git_theta.store.migrate import legacy_dir, migrate_if_pending, pending
from git_theta.store.objects import ObjectStore

__all__ = ["STORAGE_KEY", "check_storage", "open_store", "store_root"]

STORAGE_KEY = settings.STORAGE.name
STORE_DIRNAME = "theta"


def configured_root(common_dir: Path, configured: str) -> Path:
    """The store directory a `theta.storage` value names, for the repository at `common_dir`."""
    return common_dir / os.path.expanduser(configured)


def store_root(repo: Repo) -> Path:
    """The store directory of `repo`: `theta.storage`, else `<common git dir>/theta`."""
    configured = repo.config_get(STORAGE_KEY)
    if configured:
        return configured_root(repo.common_dir, configured)
    return repo.common_dir / STORE_DIRNAME


def check_storage(root: Path) -> None:
    """Refuse a `theta.storage` that is not an existing directory.

    Writability is found out by the first write (the error names the store then), so a
    read-only shared store still serves checkouts.

    Raises:
        StoreWriteError: one line naming the path and the way out.
    """
    if root.is_dir():
        return
    what = "is not a directory" if root.exists() else "does not exist"
    raise StoreWriteError(
        f"{STORAGE_KEY} {root} {what}; create that directory or change `git config {STORAGE_KEY}`",
        path=root,
    )


def open_store(repo: Repo) -> ObjectStore:
    """The object store of `repo`, with its `theta.maxObjectBytes` bound, its objects moved out
    of `.git/lfs/objects` first if they are still there (once per repository; afterwards this
    costs a stat).

    Raises:
        StoreWriteError: `theta.storage` names no directory.
        ConfigError: `theta.maxObjectBytes` is not a size.
    """
    configured = settings.STORAGE.read(repo)
    if configured:
        root = configured_root(repo.common_dir, configured)
        check_storage(root)
    else:
        root = repo.common_dir / STORE_DIRNAME
    migrating = pending(repo.common_dir)
    store = ObjectStore(root, legacy_dir=legacy_dir(repo.common_dir) if migrating else None)
    limit = settings.MAX_OBJECT_BYTES.read(repo)
    if limit:
        try:
            store.max_object_bytes = parse_size(limit)
        except ValueError as exc:
            raise ConfigError(f"{MAX_OBJECT_BYTES_KEY}: {exc}") from None
    if migrating:
        migrate_if_pending(store, repo.common_dir)
    return store
