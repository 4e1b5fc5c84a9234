"""One clean's pass over a checkpoint's tensors: an unchanged tensor reuses its previous entry
after one hash pass; changed ones go to the context's workers in batches within a byte budget,
so memory stays bounded however large the checkpoint."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from git_theta.errors import CheckpointError
from git_theta.formats.base import PagedTensor
from git_theta.inflight import ByteBudget
from git_theta.metadata import ParamEntry
from git_theta.store.pack import PackBuilder
from git_theta.tensor import BufferPool, RawTensor, content_hash
from git_theta.updates.policy import Updater, merged_hash

if TYPE_CHECKING:
    from concurrent.futures import Future

    from git_theta.clean import Cleaner

__all__ = ["BATCH_BYTES", "BATCH_TENSORS", "INFLIGHT_BYTES", "CleanRun", "ReuseKeys"]

# Raw tensor bytes allowed in flight between reader and workers. With the tensor being read,
# memory stays near 2x the largest tensor plus this, however large the checkpoint.
INFLIGHT_BYTES = 64 * 1024 * 1024
# Changed tensors go to the workers in jobs of up to this many bytes or tensors: enough tensors
# per job that hand-offs cost little next to the work, few enough that every worker gets jobs
# from a checkpoint of a few hundred small tensors. A job's small tensors make one pack
# (git_theta/store/pack.py), so this also bounds a pack: 1 MiB of 4 KiB tensors is 256 of them,
# and each pack costs a file and often two shard directories.
BATCH_BYTES = 1024 * 1024
BATCH_TENSORS = 256

ReuseKeys = dict[tuple[str, str, tuple[int, ...]], ParamEntry]
_Item = tuple[str, RawTensor | PagedTensor, str]


def _content_hash(tensor: RawTensor | PagedTensor) -> str:
    if isinstance(tensor, PagedTensor):
        return tensor.data.content_hash()
    return content_hash(tensor.data)


def _release(tensor: RawTensor | PagedTensor, buffers: BufferPool) -> None:
    """Hand a tensor's memory back for the next one; its bytes must not be used afterwards."""
    if isinstance(tensor, PagedTensor):
        tensor.data.release()
    else:
        buffers.give(tensor.data)


class CleanRun:
    """One file's tensors: unchanged ones reuse their entries, changed ones go to the workers
    in batches within a byte budget; `run` returns every parameter's entry."""

    def __init__(
        self,
        cleaner: Cleaner,
        previous: ReuseKeys,
        by_name: Mapping[str, ParamEntry],
        updater: Updater,
        path: str,
        buffers: BufferPool,
    ) -> None:
        self._cleaner = cleaner
        self._previous = previous
        self._by_name = by_name
        self._updater = updater
        self._path = path
        self._buffers = buffers
        self._budget = ByteBudget(INFLIGHT_BYTES)
        # name -> (the job encoding it, its place in that job's batch)
        self._pending: dict[str, tuple[Future[list[ParamEntry]], int]] = {}
        self._jobs: list[Future[list[ParamEntry]]] = []
        self._batch: list[_Item] = []
        self._batch_bytes = 0

    def run(self, tensors: Iterator[tuple[str, RawTensor | PagedTensor]]) -> dict[str, ParamEntry]:
        done: dict[str, ParamEntry] = {}
        seen: set[str] = set()
        try:
            for name, tensor in tensors:
                if name in seen:
                    _release(tensor, self._buffers)
                    raise CheckpointError(f"{self._path}: parameter {name!r} appears twice")
                seen.add(name)
                digest = _content_hash(tensor)
                reused = self._reusable(name, tensor, digest)
                if reused is not None:
                    done[name] = reused
                    _release(tensor, self._buffers)
                    continue
                # Small tensors go to the workers in batches: a job per tensor costs more in
                # thread hand-offs than encoding a tiny tensor does. A large one goes alone.
                if self._batch and self._batch_bytes + len(tensor.data) > BATCH_BYTES:
                    self._submit()
                self._batch.append((name, tensor, digest))
                self._batch_bytes += len(tensor.data)
                if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_TENSORS:
                    self._submit()
            if self._batch:
                self._submit()
        finally:
            for _, tensor, _ in self._batch:  # never submitted: the reader failed
                _release(tensor, self._buffers)
            # Whatever happened, let the workers finish so no object is left half-written.
            for job in self._jobs:
                job.exception()
        for name, (job, i) in self._pending.items():
            done[name] = job.result()[i]
        return done

    def _reusable(
        self, name: str, tensor: RawTensor | PagedTensor, digest: str
    ) -> ParamEntry | None:
        """A previous entry with exactly these bytes, preferring this parameter's own."""
        if name in self._updater.adapter:
            return None
        reused = self._previous.get((digest, tensor.dtype, tensor.shape))
        own = self._by_name.get(name)
        if (
            own is not None
            and (own.dtype, own.shape) == (tensor.dtype, tensor.shape)
            and digest in (own.hash, merged_hash(own))
        ):
            return own  # of several entries with these bytes, keep this parameter's
        return reused

    def _submit(self) -> None:
        batch, cost = self._batch, self._batch_bytes
        self._budget.acquire(cost)
        job = self._cleaner.ctx.pool.submit(self._work, batch, cost)
        self._jobs.append(job)
        for i, (name, _, _) in enumerate(batch):
            self._pending[name] = (job, i)
        self._batch, self._batch_bytes = [], 0

    def _work(self, items: list[_Item], cost: int) -> list[ParamEntry]:
        # The batch's small dense tensors share one object (git_theta/store/pack.py): a file
        # per tiny tensor made a checkpoint of 20,000 of them cost ~20x Git LFS's add.
        pack = PackBuilder()
        try:
            made = [
                self._cleaner.encode_changed(
                    name,
                    tensor,
                    digest,
                    self._by_name.get(name),
                    self._updater,
                    self._buffers,
                    pack,
                )
                for name, tensor, digest in items
            ]
            refs = pack.store(self._cleaner.ctx.store)
            return [e if isinstance(e, ParamEntry) else e.entry(refs) for e in made]
        finally:
            self._budget.release(cost)
            for _, tensor, _ in items:
                _release(tensor, self._buffers)
