"""Upload and download objects to or from a named remote: endpoint, adapter, queue, progress.

The adapter registry is a literal table keyed by URL scheme; an unknown scheme is an error that
lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from git_theta.errors import TransferError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore, open_store
from git_theta.transfer.base import Operation, Transport
from git_theta.transfer.endpoint import Endpoint, default_remote, find_endpoint
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.progress import Progress
from git_theta.transfer.queue import TransferStats, run_transfer

__all__ = ["TRANSPORTS", "download", "open_transport", "resolve_endpoint", "upload"]

TransportFactory = Callable[[Endpoint, Repo, TransferOptions], Transport]


def _http(endpoint: Endpoint, repo: Repo, options: TransferOptions) -> Transport:
    from git_theta.transfer.batch import HttpTransport  # httpx only when a server is used

    return HttpTransport(endpoint, repo, options)


def _local(endpoint: Endpoint, repo: Repo, options: TransferOptions) -> Transport:
    from git_theta.transfer.local import LocalTransport

    return LocalTransport(endpoint)


TRANSPORTS: dict[str, TransportFactory] = {"http": _http, "https": _http, "file": _local}


def open_transport(repo: Repo, endpoint: Endpoint, options: TransferOptions) -> Transport:
    """The adapter for `endpoint`'s scheme.

    Raises:
        TransferError: no adapter speaks that scheme.
    """
    factory = TRANSPORTS.get(endpoint.scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in TRANSPORTS)
        raise TransferError(
            f"{endpoint.description}: git-theta cannot transfer over {endpoint.scheme}:// "
            f"(it speaks {known} and local paths); set remote.{endpoint.remote}.lfsurl",
            remote=endpoint.description,
        )
    return factory(endpoint, repo, options)


def resolve_endpoint(repo: Repo, remote: str | None, operation: Operation) -> Endpoint:
    """The endpoint of `remote` (default: the remote Git LFS would pick).

    Raises:
        TransferError: there is no such remote, or no remote at all.
    """
    name = remote or default_remote(repo)
    if name is None:
        raise TransferError(
            "this repository has no remote; add one with `git remote add origin URL`, "
            "or set lfs.url"
        )
    endpoint = find_endpoint(repo, name, operation)
    if endpoint is None:
        raise TransferError(
            f"no remote named {name!r} and no LFS URL for it (see `git remote -v`)", remote=name
        )
    return endpoint


def _move(
    repo: Repo,
    remote: str | None,
    operation: Operation,
    refs: Sequence[ObjectRef],
    users: Mapping[str, Sequence[str]] | None,
    label: str,
    store: ObjectStore | None = None,
) -> TransferStats:
    store = store or open_store(repo)
    if operation == "download":
        refs = store.missing(list(refs))
    if not refs:
        return TransferStats(0, 0, 0)
    endpoint = resolve_endpoint(repo, remote, operation)
    options = TransferOptions.from_config(repo)
    transport = open_transport(repo, endpoint, options)
    try:
        return run_transfer(
            transport,
            operation,
            refs,
            store,
            concurrency=options.concurrency,
            users=users,
            progress=Progress(label),
        )
    finally:
        transport.close()


def upload(
    repo: Repo,
    remote: str | None,
    refs: Sequence[ObjectRef],
    *,
    users: Mapping[str, Sequence[str]] | None = None,
) -> TransferStats:
    """Send the objects of `refs` that the remote lacks (the batch API decides which)."""
    return _move(repo, remote, "upload", refs, users, "Uploading checkpoint objects")


def download(
    repo: Repo,
    remote: str | None,
    refs: Sequence[ObjectRef],
    *,
    users: Mapping[str, Sequence[str]] | None = None,
    store: ObjectStore | None = None,
    label: str = "Downloading checkpoint objects",
) -> TransferStats:
    """Fetch the objects of `refs` missing from `store` (default: the repository's own).

    Args:
        store: where they go; `git theta migrate import` passes Git LFS's own directory
            (`.git/lfs/objects` has the same `ab/cd/<oid>` layout) for the LFS objects of
            the history it converts.
    """
    return _move(repo, remote, "download", refs, users, label, store)
