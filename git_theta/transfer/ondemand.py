"""Download on demand: what a smudge calls when objects of a checkpoint are missing.

The remote is the one Git LFS would pick (`remote.lfsdefault`, `lfs.remote`, the branch's
upstream, `origin`). One connection pool serves every file of the git command, and each
checkpoint's missing objects go out as one transfer (batches of at most 100 objects).
"""

from __future__ import annotations

from collections.abc import Sequence

from git_theta.errors import GitThetaError
from git_theta.git import hooks
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import open_store
from git_theta.transfer.base import Transport
from git_theta.transfer.endpoint import Endpoint, default_remote, find_endpoint
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.progress import Progress
from git_theta.transfer.queue import run_transfer
from git_theta.transfer.remote import open_transport

__all__ = ["RemoteDownloader"]


class RemoteDownloader:
    """Callable as `downloader(refs)`: fetch `refs` into the repository's store.

    Does nothing when the repository has no remote (the caller then reports the objects
    missing). Raises TransferError when the remote cannot give them.
    """

    def __init__(self, repo: Repo) -> None:
        self._repo = repo
        self._endpoint: Endpoint | None | bool = False
        self._transport: Transport | None = None
        self._options: TransferOptions | None = None

    def __call__(self, refs: Sequence[ObjectRef]) -> None:
        if self._endpoint is False:
            name = default_remote(self._repo)
            self._endpoint = find_endpoint(self._repo, name, "download") if name else None
        if not isinstance(self._endpoint, Endpoint):
            return
        if self._transport is None:
            self._options = TransferOptions.from_config(self._repo)
            self._transport = open_transport(self._repo, self._endpoint, self._options)
            self._install_hook()
        assert self._options is not None
        run_transfer(
            self._transport,
            "download",
            refs,
            open_store(self._repo),
            concurrency=self._options.concurrency,
            progress=Progress("Downloading checkpoint objects"),
        )

    def _install_hook(self) -> None:
        # A fresh clone has no hooks; its first download is the moment it starts talking to a
        # remote, so set up the pre-push upload then (as git-lfs's filter-process does). A hook
        # already in place is left alone here; `git theta install --local` chains it.
        if self._repo.toplevel is None:
            return
        try:
            hooks.install(self._repo, only_if_absent=True)
        except (GitThetaError, OSError):
            pass

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
