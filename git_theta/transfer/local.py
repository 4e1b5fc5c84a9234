"""Remotes on this machine: a plain path or a file:// URL (a directory, a shared drive).

No server: objects move between the two repositories' stores (`.git/theta/objects` of a work
tree, `theta/objects` of a bare repository, or the directory the remote's `theta.storage`
names). On one file system an object is hard-linked, as `git clone` of a local path links
Git's own objects: objects are immutable and named by their content, so two names for one
file are safe, and a clone of a 10 GB model takes no second 10 GB. Each linked object is
verified against its oid first; across file systems it is copied, verified, temp-then-rename,
as every other write to a store is.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from git_theta.errors import TransferError
from git_theta.git.repo import run_git
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.store.location import STORAGE_KEY, STORE_DIRNAME, check_storage, configured_root
from git_theta.store.migrate import legacy_dir
from git_theta.store.objects import TMP_PREFIX
from git_theta.transfer.base import (
    CHUNK_BYTES,
    Action,
    ObjectFailed,
    Operation,
    PlannedObject,
    read_chunks,
    write_verified,
)
from git_theta.transfer.endpoint import Endpoint

__all__ = ["LocalTransport", "remote_store_dir"]

# A hard link is impossible across file systems (EXDEV), on some (EPERM), or past the
# file system's link count (EMLINK): the object is copied then.
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


def _common_dir(repo_path: Path) -> Path:
    """The common git dir of the repository at `repo_path` (work tree, linked work tree or bare).

    Raises:
        TransferError: there is no git repository there.
    """
    git_dir = repo_path / ".git"
    if git_dir.is_file():  # a linked work tree or submodule: `gitdir: <path>`
        text = git_dir.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            git_dir = (repo_path / text.removeprefix("gitdir:").strip()).resolve()
    if not git_dir.is_dir():
        git_dir = repo_path  # bare
    if not ((git_dir / "HEAD").is_file() and (git_dir / "objects").is_dir()):
        raise TransferError(
            f"{repo_path} is not a git repository (no objects to transfer there)",
            remote=str(repo_path),
        )
    common = git_dir / "commondir"
    if common.is_file():
        git_dir = (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
    return git_dir.resolve()


def remote_store_dir(repo_path: Path) -> Path:
    """The store directory of the repository at `repo_path`: its own `theta.storage`, else
    `<its common git dir>/theta`.

    Read from the file system and that repository's config file, not asked of git in the
    usual way: inside a filter or hook git sets GIT_DIR to *this* repository, and a
    `git rev-parse` or `git config --get` there would answer for it.

    Raises:
        TransferError: there is no git repository there.
        StoreWriteError: its `theta.storage` names no directory.
    """
    common = _common_dir(repo_path)
    proc = run_git(
        ["config", "-f", str(common / "config"), "--get", STORAGE_KEY], cwd=common, check=False
    )
    configured = proc.stdout.decode("utf-8").strip() if proc.returncode == 0 else ""
    if configured:
        root = configured_root(common, configured)
        check_storage(root)
        return root
    return common / STORE_DIRNAME


class LocalTransport:
    """Link or copy objects to and from the object store of a repository on this machine."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.description = endpoint.description
        root = remote_store_dir(endpoint.local_path)
        # A remote made by an older git-theta may still hold objects in lfs/objects: read
        # them there (the remote itself moves them when git-theta next runs in it).
        old = legacy_dir(_common_dir(endpoint.local_path))
        self._remote = ObjectStore(root, legacy_dir=old if old.is_dir() else None)

    def close(self) -> None:
        pass

    def batch(self, operation: Operation, refs: Sequence[ObjectRef]) -> list[PlannedObject]:
        plan = []
        for ref in refs:
            here = self._remote.path(ref.oid).as_uri()
            if operation == "download":
                if self._remote.has(ref):
                    plan.append(PlannedObject(ref, {"download": Action(here)}))
                else:
                    plan.append(
                        PlannedObject(ref, error=f"not in {self._remote.objects_dir} (404)")
                    )
            elif self._remote.has(ref):
                plan.append(PlannedObject(ref))  # already there
            else:
                plan.append(PlannedObject(ref, {"upload": Action(here)}))
        return plan

    def upload(self, obj: PlannedObject, store: ObjectStore) -> int:
        if "upload" not in obj.actions:
            return 0
        return _transfer(store, self._remote, obj.ref, "the local store")

    def download(self, obj: PlannedObject, store: ObjectStore) -> int:
        return _transfer(self._remote, store, obj.ref, "the remote")


def _transfer(source: ObjectStore, target: ObjectStore, ref: ObjectRef, where: str) -> int:
    """Put object `ref` of `source` into `target`: a verified hard link, else a verified copy."""
    path = source.locate(ref.oid)
    if not path.is_file():
        raise ObjectFailed(f"not in {where} ({source.objects_dir})")
    linked = _link_verified(path, target, ref)
    if linked is not None:
        return linked
    try:
        return write_verified(target, ref, read_chunks(path))
    except OSError as exc:
        raise ObjectFailed(f"copy failed: {exc.strerror or exc}") from None


def _link_verified(path: Path, target: ObjectStore, ref: ObjectRef) -> int | None:
    """Hard-link `path` into `target` as object `ref`; None when the file system cannot link.

    The link is made under a temp name and its bytes (the very inode that will be installed)
    are hashed before it takes the object's name, so a corrupt source never enters `target`.
    An object already in `target` is kept.
    """
    try:
        target.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.tmp_dir / f"{TMP_PREFIX}link-{secrets.token_hex(8)}"
        os.link(path, tmp)
    except FileNotFoundError:
        raise ObjectFailed(f"not in {path.parent}") from None
    except OSError as exc:
        if exc.errno in _NO_LINK:
            return None
        raise ObjectFailed(f"link failed: {exc.strerror or exc}") from None
    try:
        if _sha256(tmp) != ref:
            raise ObjectFailed("its bytes do not match the oid; nothing was stored")
        dest = target.path(ref.oid)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            pass  # another process put it there meanwhile: the same bytes, by its name
        return ref.size
    except OSError as exc:
        raise ObjectFailed(f"link failed: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> ObjectRef:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return ObjectRef(digest.hexdigest(), size)
