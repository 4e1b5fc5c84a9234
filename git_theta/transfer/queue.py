"""The transfer queue: batches of at most BATCH_SIZE, objects moved concurrently, failures
collected and reported in one line.

The next batch request goes out while the previous batch's objects are still moving, so the
server's answer time hides behind the transfers (Git LFS's `tq/transfer_queue.go` does the same).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from git_theta.errors import CredentialsError, TransferError
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.transfer.base import (
    BATCH_SIZE,
    BatchFailed,
    ObjectFailed,
    Operation,
    PlannedObject,
    Transport,
)
from git_theta.transfer.progress import Progress

__all__ = ["TransferStats", "failure_message", "run_transfer"]

# Objects named in an error line; the rest are counted.
SHOWN_OBJECTS = 3


@dataclass(frozen=True)
class TransferStats:
    """What one transfer did.

    Attributes:
        asked: distinct objects sent to the batch endpoint.
        moved: objects actually uploaded or downloaded.
        bytes: their bytes.
        remote: the remote's description ("" when nothing had to be asked).
    """

    asked: int
    moved: int
    bytes: int
    remote: str = ""


def run_transfer(
    transport: Transport,
    operation: Operation,
    refs: Sequence[ObjectRef],
    store: ObjectStore,
    *,
    concurrency: int,
    users: Mapping[str, Sequence[str]] | None = None,
    progress: Progress | None = None,
) -> TransferStats:
    """Move `refs` between `store` and the remote behind `transport`.

    Args:
        operation: "upload" (objects the server lacks are sent) or "download" (every ref is
            fetched; pass only the ones missing locally).
        users: oid -> where each object is used ("model.safetensors: embed.weight"), for errors.

    Raises:
        TransferError: some objects failed; the message names the remote, the reason and them.
        CredentialsError: the server refused us before any object moved.
    """
    unique = list({ref.oid: ref for ref in refs}.values())
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="transfer") as pool:
        jobs, auth_failed = _submit(transport, operation, unique, store, pool, failures, progress)
        moved, nbytes = _collect(jobs, failures, progress)
    if progress is not None:
        progress.finish()
    if failures:
        kind = CredentialsError if auth_failed else TransferError
        raise kind(
            failure_message(operation, transport.description, failures, len(unique), users),
            remote=transport.description,
            failures=failures,
        )
    return TransferStats(len(unique), moved, nbytes, transport.description)


def _submit(
    transport: Transport,
    operation: Operation,
    unique: list[ObjectRef],
    store: ObjectStore,
    pool: ThreadPoolExecutor,
    failures: dict[str, str],
    progress: Progress | None,
) -> tuple[dict[Future[int], PlannedObject], bool]:
    """Ask the server about `unique` a batch at a time and start moving what it plans.
    Returns the running moves and whether a batch failed for lack of credentials."""
    jobs: dict[Future[int], PlannedObject] = {}
    move = transport.upload if operation == "upload" else transport.download
    for start in range(0, len(unique), BATCH_SIZE):
        try:
            plan = transport.batch(operation, unique[start : start + BATCH_SIZE])
        except BatchFailed as exc:
            for ref in unique[start:]:
                failures[ref.oid] = exc.reason
            return jobs, exc.auth
        for obj in plan:
            if obj.error is not None:
                failures[obj.ref.oid] = obj.error
            elif obj.actions:
                if progress is not None:
                    progress.expect(obj.ref.size)
                jobs[pool.submit(move, obj, store)] = obj
            elif operation == "download":
                failures[obj.ref.oid] = "the server gave no download action"
    return jobs, False


def _collect(
    jobs: dict[Future[int], PlannedObject],
    failures: dict[str, str],
    progress: Progress | None,
) -> tuple[int, int]:
    """Wait for the moves; the count and bytes of those that succeeded."""
    moved = nbytes = 0
    for fut in as_completed(jobs):
        obj = jobs[fut]
        try:
            nbytes += fut.result()
            moved += 1
        except ObjectFailed as exc:
            failures[obj.ref.oid] = str(exc)
        if progress is not None:
            progress.advance(obj.ref.size)
    return moved, nbytes


def failure_message(
    operation: Operation,
    remote: str,
    failures: Mapping[str, str],
    total: int,
    users: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One line: the remote, the commonest reason, and the first objects with their users."""
    reasons = Counter(failures.values()).most_common()
    reason = reasons[0][0] + (
        f" (and {len(reasons) - 1} other error(s))" if len(reasons) > 1 else ""
    )
    direction = "to" if operation == "upload" else "from"
    shown = []
    for oid in sorted(failures, key=lambda o: (failures[o] != reasons[0][0], o))[:SHOWN_OBJECTS]:
        where = list((users or {}).get(oid, ()))
        label = oid[:12]
        if where:
            label += f" ({', '.join(where[:2])}{', ...' if len(where) > 2 else ''})"
        shown.append(label)
    more = len(failures) - len(shown)
    listed = ", ".join(shown) + (f" and {more} more" if more else "")
    return (
        f"{operation} {direction} {remote} failed for {len(failures)} of {total} object(s): "
        f"{reason}: {listed}"
    )
