"""Remotes on this machine: a plain path or a file:// URL (a directory, a shared drive).

No server: objects are copied between the two repositories' stores (`.git/theta/objects` of a
work tree, `theta/objects` of a bare repository), each copy verified
against its oid and written temp-then-rename, as every other write to a store is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from git_theta.errors import TransferError
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.store.location import STORE_DIRNAME
from git_theta.transfer.base import (
    Action,
    ObjectFailed,
    Operation,
    PlannedObject,
    read_chunks,
    write_verified,
)
from git_theta.transfer.endpoint import Endpoint

__all__ = ["LocalTransport", "remote_store_dir"]


def remote_store_dir(repo_path: Path) -> Path:
    """The store directory of the repository at `repo_path` (work tree or bare).

    Read from the file system, not asked of git: inside a filter or hook git sets GIT_DIR to
    *this* repository, and a `git rev-parse` there would answer for it.

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
    return git_dir.resolve() / STORE_DIRNAME


class LocalTransport:
    """Copy objects to and from the object store of a repository on this machine."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.description = endpoint.description
        self._remote = ObjectStore(remote_store_dir(endpoint.local_path))

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
        return self._copy(store, self._remote, obj.ref, "the local store")

    def download(self, obj: PlannedObject, store: ObjectStore) -> int:
        return self._copy(self._remote, store, obj.ref, "the remote")

    @staticmethod
    def _copy(source: ObjectStore, target: ObjectStore, ref: ObjectRef, where: str) -> int:
        path = source.path(ref.oid)
        if not path.is_file():
            raise ObjectFailed(f"not in {where} ({source.objects_dir})")
        try:
            return write_verified(target, ref, read_chunks(path))
        except OSError as exc:
            raise ObjectFailed(f"copy failed: {exc.strerror or exc}") from None
