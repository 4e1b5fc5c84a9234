"""The contract between the transfer queue and the adapters that move bytes.

Modelled on Git LFS's `tq/transfer.go`: an adapter answers a batch request (which objects need
moving, and how) and moves one object at a time; the queue (`queue.py`) owns batching,
concurrency and the collection of failures. Two adapters exist: the LFS batch API over HTTP
(`batch.py`) and a plain directory on this machine (`local.py`).

Spec of the batch API: https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from git_theta.errors import CorruptObjectError
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore

__all__ = [
    "BATCH_SIZE",
    "Action",
    "BatchFailed",
    "ObjectFailed",
    "Operation",
    "PlannedObject",
    "Transport",
    "write_verified",
]

Operation = Literal["upload", "download"]

# The batch API's recommended ceiling on objects per request (Git LFS sends 100 too).
BATCH_SIZE = 100
# Read and write in pieces this large: big enough for throughput, small next to a tensor.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Action:
    """One step the server tells us to take for an object: where, and with which headers."""

    href: str
    header: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedObject:
    """The server's answer for one object of a batch.

    Attributes:
        ref: the object.
        actions: "upload"/"verify" or "download" -> Action; empty when nothing needs doing (an
            upload the server already has).
        error: why the server will not serve it (e.g. "404 Object does not exist"), or None.
        authenticated: the server says the actions carry their own authorisation.
    """

    ref: ObjectRef
    actions: Mapping[str, Action] = field(default_factory=dict)
    error: str | None = None
    authenticated: bool = False


class BatchFailed(Exception):
    """A whole batch request failed; `auth` when the server refused our credentials."""

    def __init__(self, reason: str, *, auth: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.auth = auth


class ObjectFailed(Exception):
    """One object could not be moved; the queue records the reason and goes on with the rest."""


class Transport(Protocol):
    """What an adapter does. Every method may be called from several threads at once.

    Attributes:
        description: the remote for messages, e.g. "origin (https://host/org/m.git/info/lfs)".
    """

    description: str

    def batch(self, operation: Operation, refs: Sequence[ObjectRef]) -> list[PlannedObject]:
        """Ask which of `refs` (at most BATCH_SIZE) need moving and how; one entry per ref.

        Raises:
            BatchFailed: the whole request failed (server down, refused, malformed answer).
        """
        ...

    def upload(self, obj: PlannedObject, store: ObjectStore) -> int:
        """Send the object from `store` as `obj.actions` say (then verify); returns bytes sent.

        Raises:
            ObjectFailed: this object failed; others may still go through.
        """
        ...

    def download(self, obj: PlannedObject, store: ObjectStore) -> int:
        """Fetch the object into `store`, verified against its oid; returns bytes received.

        Raises:
            ObjectFailed: this object failed (nothing is left in the store for it).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def write_verified(store: ObjectStore, ref: ObjectRef, chunks: Iterable[bytes | memoryview]) -> int:
    """Put an object into `store` only if `chunks` hash to `ref`: written to the store's tmp dir,
    checked (size and sha256), then renamed into place. Returns the bytes written.

    Raises:
        ObjectFailed: the bytes do not match `ref` (nothing enters the store).
    """
    try:
        return store.put(chunks, expected=ref).size
    except CorruptObjectError:
        raise ObjectFailed("received bytes do not match the oid; nothing was stored") from None


def read_chunks(path: Path) -> Iterable[bytes]:
    """The bytes of a file in CHUNK_BYTES pieces."""
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk
