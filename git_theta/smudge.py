"""smudge: metadata -> checkpoint (the model is git-lfs lfs/gitfilter_smudge.go).

Every object is made present (downloaded when absent) before a byte is written; tensors are
decoded ahead on the context's worker threads, in order, within a byte budget. A file written
by `write_file` whose format knows every tensor's offset up front is written by the workers
themselves, each tensor at its place (placed.py).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from git_theta import metadata as md
from git_theta.context import RepoContext
from git_theta.formats import Format, TensorSpec, get_format
from git_theta.formats.base import Placement
from git_theta.metadata import ParamEntry
from git_theta.progress import with_progress
from git_theta.tensor import BufferPool, RawTensor

if TYPE_CHECKING:
    from concurrent.futures import Future

    from git_theta.kept import Kept

__all__ = ["PassThrough", "Smudger"]

# Raw tensor bytes decoded ahead of the format writing them.
INFLIGHT_BYTES = 64 * 1024 * 1024
# Jobs a smudge decodes ahead, per worker: with tiny tensors the byte budget alone would queue
# all of them at once (a future and a buffer each); a few jobs per worker keep each one busy.
INFLIGHT_JOBS_PER_WORKER = 4
# Tensors are decoded in jobs of up to this many bytes or tensors (as clean sends them), so a
# job is never just a hand-off.
BATCH_BYTES = 1024 * 1024
BATCH_TENSORS = 64


def _landing(placement: Placement, params: Mapping[str, ParamEntry]) -> dict[str, tuple[int, int]]:
    """Each tensor's hash -> (offset, size) in a file written by `placement`."""
    return {e.hash: (placement.offsets[n], e.nbytes) for n, e in params.items()}


def progress_label(path: str) -> str:
    return f"git-theta: writing {path}"


def batches(
    params: Mapping[str, ParamEntry], order: Sequence[str]
) -> Iterator[tuple[int, list[str]]]:
    """`order` cut into decode jobs of about BATCH_BYTES or BATCH_TENSORS, with their sizes."""
    batch: list[str] = []
    size = 0
    for name in order:
        batch.append(name)
        size += params[name].nbytes
        if size >= BATCH_BYTES or len(batch) >= BATCH_TENSORS:
            yield size, batch
            batch, size = [], 0
    if batch:
        yield size, batch


class _Job(NamedTuple):
    """A checkpoint to write: its metadata, format, layout bytes and tensor specs."""

    meta: md.Metadata
    fmt: Format
    layout: bytes | None
    specs: dict[str, TensorSpec]


class PassThrough(Exception):
    """Smudge met content that is not our metadata; the caller should emit it unchanged."""


class Smudger:
    """Writes the checkpoints metadata describes, reading objects from `ctx`'s store."""

    def __init__(self, ctx: RepoContext) -> None:
        self.ctx = ctx

    def parse(self, data: bytes, path: str) -> md.Metadata:
        """The metadata `data` holds; a caller that needs it first passes it on as `meta`.

        Raises:
            PassThrough: `data` is not our metadata (write it out unchanged).
        """
        try:
            return md.decode(data, source=path)
        except md.NotMetadataError:
            raise PassThrough() from None

    def smudge(
        self, data: bytes, path: str, out: BinaryIO, *, meta: md.Metadata | None = None
    ) -> None:
        """Write the checkpoint that metadata `data` describes (already parsed: `meta`) to `out`.

        Raises:
            PassThrough: `data` is not our metadata (write it out unchanged).
            MissingObjectError: objects are absent; names the parameters and the fix.
            CorruptObjectError: an object does not match its oid; names the parameter.
        """
        self._join(
            self._prepare(meta if meta is not None else self.parse(data, path), path), path, out
        )

    def write_file(
        self,
        data: bytes,
        path: str,
        target: str | os.PathLike[str],
        *,
        meta: md.Metadata | None = None,
        reuse: Kept | None = None,
    ) -> dict[str, tuple[int, int]] | None:
        """Write the checkpoint metadata `data` describes to `target`, atomically (a failure
        leaves `target` as it was; an existing file keeps its mode); `path` names it in
        messages. The bytes are those `smudge` writes. A format that knows where each tensor
        goes before decoding (`Format.place`) has its tensors decoded on every worker, each
        written at its offset (copied from `reuse` where it holds them); others are written
        in order through `join`. Returns, for a placed file, each tensor's hash -> (offset,
        size) in it; else None.

        Raises: as `smudge`.
        """
        from git_theta.atomic import atomic_write  # not on the filter's start-up path

        job = self._prepare(meta if meta is not None else self.parse(data, path), path)
        placement = job.fmt.place(job.layout, job.specs, source=path)
        if placement is not None and reuse is not None:
            fd = reuse.adopt(placement.head, placement.size)
            if fd is not None:  # the previous version, rewritten where it changed
                from git_theta.placed import write_placed

                params = job.meta.params
                write_placed(self.ctx, params, placement, fd, path=path, reuse=reuse)
                reuse.move_to(Path(target))
                return _landing(placement, params)
        with atomic_write(target, keep_mode=True) as f:
            if placement is None:
                self._join(job, path, f)
                return None
            from git_theta.placed import write_placed

            params = job.meta.params
            write_placed(self.ctx, params, placement, f.fileno(), path=path, reuse=reuse)
        return _landing(placement, params)

    def landing(self, meta: md.Metadata, path: str) -> dict[str, tuple[int, int]] | None:
        """Each tensor's hash -> (offset, size) in the file `write_file` makes of `meta`,
        without fetching anything; None when its format does not place tensors up front or
        the layout's object is not here."""
        if meta.layout is not None and self.ctx.store.missing(meta.layout.objects()):
            return None
        job = self._job(meta, path)
        placement = job.fmt.place(job.layout, job.specs, source=path)
        return None if placement is None else _landing(placement, meta.params)

    def _prepare(self, meta: md.Metadata, path: str) -> _Job:
        self.ctx.check_objects(meta, path)
        return self._job(meta, path)

    def _job(self, meta: md.Metadata, path: str) -> _Job:
        """`meta` with its format, layout bytes (its objects present) and tensor specs."""
        layout = (
            bytes(self.ctx.rebuild(meta.layout, path, "the layout").data) if meta.layout else None
        )
        specs = {name: TensorSpec(e.dtype, e.shape) for name, e in meta.params.items()}
        return _Job(meta, get_format(meta.format), layout, specs)

    def _join(self, job: _Job, path: str, out: BinaryIO) -> None:
        # A streaming format writes each tensor before it asks for the next, so that tensor's
        # buffer can be decoded into again; others (PyTorch) keep every tensor until the end.
        recycle = BufferPool() if job.fmt.streams else None
        source = self._tensor_source(job.meta.params, path, recycle)
        total = sum(e.nbytes for e in job.meta.params.values())

        def shown(order: Sequence[str]) -> Iterator[RawTensor]:
            return with_progress(
                source(order), label=progress_label(path), total=total, size=lambda t: len(t.data)
            )

        job.fmt.join(out, job.layout, job.specs, shown, source=path)

    def _tensor_source(
        self, params: Mapping[str, ParamEntry], path: str, recycle: BufferPool | None = None
    ) -> Callable[[Sequence[str]], Iterator[RawTensor]]:
        rebuild = self.ctx.rebuild

        def decode(batch: list[str]) -> list[RawTensor]:
            return [rebuild(params[name], path, repr(name), recycle) for name in batch]

        def source(order: Sequence[str]) -> Iterator[RawTensor]:
            # Decompress ahead in worker threads, in order, within a byte budget.
            window: deque[tuple[int, Future[list[RawTensor]]]] = deque()
            inflight = 0
            jobs = batches(params, order)
            jobs_ahead = max(INFLIGHT_JOBS_PER_WORKER * self.ctx.workers, 2)
            try:
                while True:
                    while not window or (inflight < INFLIGHT_BYTES and len(window) < jobs_ahead):
                        job = next(jobs, None)
                        if job is None:
                            break
                        window.append((job[0], self.ctx.pool.submit(decode, job[1])))
                        inflight += job[0]
                    if not window:
                        return
                    size, fut = window.popleft()
                    inflight -= size
                    for tensor in fut.result():
                        yield tensor
                        if recycle is not None:  # the format has written it: decode into it again
                            recycle.give(tensor.data)
            finally:
                for _, fut in window:
                    fut.cancel()

        return source
