"""Where a repository's object store lives.

Our own place in the repository's common git dir, `<common>/theta/objects/ab/cd/<oid>`,
shared by every work tree; never `<common>/lfs/objects`, which Git LFS owns: anything there that
no LFS pointer references is garbage to `git lfs prune`. `git config theta.storage PATH` moves
the store elsewhere (several clones can share one), as `lfs.storage` does for Git LFS; a
relative PATH is taken from the common git dir.
"""

from __future__ import annotations

import os
from pathlib import Path

from git_theta.errors import ConfigError
from git_theta.git.repo import Repo
from git_theta.limits import MAX_OBJECT_BYTES_KEY, parse_size
from git_theta.store.objects import ObjectStore

__all__ = ["STORAGE_KEY", "open_store", "store_root"]

STORAGE_KEY = "theta.storage"
STORE_DIRNAME = "theta"


def store_root(repo: Repo) -> Path:
    """The store directory of `repo`: `theta.storage`, else `<common git dir>/theta`."""
    configured = repo.config_get(STORAGE_KEY)
    if configured:
        return repo.common_dir / os.path.expanduser(configured)
    return repo.common_dir / STORE_DIRNAME


def open_store(repo: Repo) -> ObjectStore:
    """The object store of `repo`, with its `theta.maxObjectBytes` bound.

    Raises:
        ConfigError: `theta.maxObjectBytes` is not a size.
    """
    store = ObjectStore(store_root(repo))
    configured = repo.config_get(MAX_OBJECT_BYTES_KEY)
    if configured:
        try:
            store.max_object_bytes = parse_size(configured)
        except ValueError as exc:
            raise ConfigError(f"{MAX_OBJECT_BYTES_KEY}: {exc}") from None
    return store
