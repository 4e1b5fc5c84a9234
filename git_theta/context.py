"""The repository context every command shares: the repository, its object store, its `theta.*`
configuration (read once), a worker pool, and making sure objects are present (downloading the
absent, replacing the corrupt). The cleaner (clean.py), the smudger (smudge.py), merges, diffs,
`git theta add`/`resolve` and the public API all work through one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from git_theta import metadata as md
from git_theta.errors import (
    CorruptObjectError,
    MetadataError,
    MissingObjectError,
    StoreError,
    in_context,
)
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata, ParamEntry
from git_theta.settings import ConfigKey
from git_theta.store import open_store
from git_theta.tensor import BufferPool, RawTensor
from git_theta.updates.rebuild import load_entry

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["RepoContext"]

Downloader = Callable[[Sequence[md.ObjectRef]], None]


class RepoContext:
    """The state one git command shares: repository, object store, configuration, workers.

    Args:
        repo: the repository; found from the current directory when None.
        workers: compression/decompression threads (default: CPU count).
        downloader: called with the objects found missing, to fetch them (one call per
            checkpoint); default: download from the remote Git LFS would pick, if any.
    """

    def __init__(
        self,
        repo: Repo | None = None,
        *,
        workers: int | None = None,
        downloader: Downloader | None = None,
    ) -> None:
        self.repo = repo or Repo()
        self.store = open_store(self.repo)
        self.workers = workers or os.cpu_count() or 2
        self._downloader = downloader
        self._executor: ThreadPoolExecutor | None = None
        self._theta_config: dict[str, str] | None = None
        self._replaced: set[str] = set()  # objects found corrupt and downloaded again
        self._replace_lock = threading.Lock()

    @property
    def pool(self) -> ThreadPoolExecutor:
        """The worker threads, made on first use: `git status` on an unchanged checkpoint never
        needs one, and concurrent.futures (with logging) is a tenth of our start-up."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=self.workers)
        return self._executor

    def config(self, key: ConfigKey) -> str | None:
        """A `theta.*` git config value (None when unset or empty); the section is read once
        per context (one git command)."""
        if self._theta_config is None:
            self._theta_config = self.repo.config_section("theta")
        return key.read_from(self._theta_config)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        getattr(self._downloader, "close", lambda: None)()
        self.repo.close()

    def __enter__(self) -> RepoContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_objects(self, meta: Metadata, path: str) -> None:
        """Fetch absent objects (one download for the whole checkpoint).

        Raises:
            MissingObjectError: objects are still absent; names the parameters and the fix.
        """
        absent = self.store.missing(meta.objects())
        if not absent:
            return
        advice = "fetch them with `git theta fetch` from a remote that has them"
        from git_theta.errors import TransferError

        try:
            self._download(absent)
        except TransferError as exc:
            advice = f"{exc}; run `git theta checkout` to retry"
        missing = {ref.oid for ref in self.store.missing(absent)}
        if not missing:
            return
        names = [n for n, e in sorted(meta.params.items()) if e.object.oid in missing]
        if meta.layout and meta.layout.object.oid in missing:
            names.insert(0, "(layout)")
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise MissingObjectError(
            f"{path}: {len(missing)} object(s) missing from {self.store.objects_dir} for "
            f"parameter(s) {shown}; {advice}",
            sorted(missing),
        )

    def rebuild(
        self, entry: ParamEntry, path: str, name: str, buffers: BufferPool | None = None
    ) -> RawTensor:
        """The tensor of `entry` (update chains rebuilt, verified). A corrupt object is replaced
        from the remote and read once more; errors name `path` and parameter `name`."""
        try:
            try:
                return load_entry(entry, self.store, buffers)
            except CorruptObjectError:
                if not self._replace_corrupt(entry):
                    raise
                return load_entry(entry, self.store, buffers)
        except (StoreError, MetadataError) as exc:
            raise in_context(exc, f"{path}: parameter {name}") from None

    def load_param(self, entry: ParamEntry, path: str, name: str) -> RawTensor:
        """The tensor of parameter `name` of `path`, its objects fetched first when absent
        (see check_objects and rebuild for what it raises)."""
        self.check_objects(Metadata(format="", layout=None, params={name: entry}), path)
        return self.rebuild(entry, path, repr(name))

    def _download(self, refs: Sequence[md.ObjectRef]) -> None:
        from git_theta.transfer.replace import set_aside_truncated

        set_aside_truncated(self.repo, self.store, refs)  # "missing" by size: a cut-short copy
        if self._downloader is None:
            from git_theta.transfer.ondemand import RemoteDownloader

            self._downloader = RemoteDownloader(self.repo)
        self._downloader(refs)

    def _replace_corrupt(self, entry: ParamEntry) -> bool:
        from git_theta.transfer.replace import replace_corrupt

        with self._replace_lock:  # worker threads: one download at a time
            return replace_corrupt(
                self.repo, self.store, entry.objects(), self._download, tried=self._replaced
            )
