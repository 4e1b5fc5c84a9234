"""clean (checkpoint -> metadata) and smudge (metadata -> checkpoint): the work behind Git's
filter, shared by the long-running filter process and the one-shot commands.

Clean hashes every tensor first and compresses only those whose (hash, dtype, shape) the
previous version of the file (in the index, else HEAD) does not already have, so an unchanged
tensor costs one fast hash pass and nothing is written when nothing changed.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, BinaryIO

from git_theta import metadata as md
from git_theta.errors import (
    CheckpointError,
    ConfigError,
    CorruptObjectError,
    MetadataError,
    MissingObjectError,
    StoreError,
    StoreWriteError,
    in_context,
)
from git_theta.formats import Format, TensorSpec, get_format, sniff_format, unknown_format
from git_theta.formats.base import PagedTensor
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata, ParamEntry
from git_theta.pages import PagePool
from git_theta.progress import with_progress
from git_theta.store import encode_object, encode_paged, open_store
from git_theta.tensor import BufferPool, RawTensor, content_hash
from git_theta.updates.policy import (
    DEFAULT_MAX_CHAIN,
    DEFAULT_POLICY_KIND,
    CleanReport,
    UpdatePolicy,
    Updater,
    merged_hash,
)
from git_theta.updates.rebuild import load_entry

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["FilterSession", "PassThrough"]

# Enough to tell every built-in format apart from the metadata magic and the safetensors prefix.
PEEK_BYTES = 64
# Raw tensor bytes allowed in flight between reader and workers. With the tensor being read,
# memory stays near 2x the largest tensor plus this, however large the checkpoint.
INFLIGHT_BYTES = 64 * 1024 * 1024
# Jobs a smudge decodes ahead, per worker: with tiny tensors the byte budget alone would queue
# all of them at once (a future and a buffer each); a few jobs per worker keep each one busy.
INFLIGHT_JOBS_PER_WORKER = 4
# Changed tensors go to the workers (and a smudge's come back from them) in jobs of up to this
# many bytes or tensors: enough tensors per job that hand-offs cost little next to the work, few
# enough that every worker gets jobs from a checkpoint of a few hundred small tensors.
BATCH_BYTES = 1024 * 1024
BATCH_TENSORS = 64
# Checkpoints that need a seekable file (zip archives) are spooled; past this, to disk.
SPOOL_MEMORY_BYTES = 64 * 1024 * 1024
FORMAT_ATTRIBUTE = "theta-format"
FORMAT_CONFIG = "theta.format"
UPDATE_ATTRIBUTE = "theta-update"


class PassThrough(Exception):
    """Smudge met content that is not our metadata; the caller should emit it unchanged."""


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


class _ByteBudget:
    """Caps bytes in flight. A tensor larger than half the cap counts as half of it, and only
    one such is in flight at a time: small tensors keep the workers busy while a large one is
    compressed, instead of the reader waiting for it alone."""

    def __init__(self, limit: int) -> None:
        self._half = limit // 2
        self._limit = limit
        self._used = 0
        self._large = False
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        large = n > self._half
        cost = min(n, self._half)
        with self._cond:
            self._cond.wait_for(
                lambda: not (large and self._large) and self._used + cost <= self._limit
            )
            self._used += cost
            self._large = self._large or large

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= min(n, self._half)
            if n > self._half:
                self._large = False
            self._cond.notify_all()


class _Peeked(io.RawIOBase):
    """A stream with its first bytes already read and put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)  # type: ignore[attr-defined]


def _read_head(stream: BinaryIO, n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _reuse_keys(
    prev: Metadata | None,
) -> tuple[dict[tuple[str, str, tuple[int, ...]], ParamEntry], dict[str, ParamEntry]]:
    """The previous version's entries keyed for reuse by (hash, dtype, shape), and by name."""
    if prev is None:
        return {}, {}
    entries = list(prev.params.values()) + ([prev.layout] if prev.layout else [])
    return {(e.hash, e.dtype, e.shape): e for e in entries}, dict(prev.params)


def _file_size(repo: Repo, path: str) -> int | None:
    """The work tree file's size: what git is most likely streaming to clean (a guess for the
    progress bar only; None when there is no such file)."""
    try:
        return os.path.getsize(repo.worktree / path) if repo.toplevel is not None else None
    except OSError:
        return None


def _specs(params: Mapping[str, ParamEntry]) -> dict[str, TensorSpec]:
    return {name: TensorSpec(e.dtype, e.shape) for name, e in params.items()}


class FilterSession:
    """The state one git command's filtering shares: repository, object store, worker threads.

    Args:
        repo: the repository; found from the current directory when None.
        workers: compression/decompression threads (default: CPU count).
        downloader: called with the objects a smudge finds missing, to fetch them (one call per
            checkpoint); default: download from the remote Git LFS would pick, if any.
    """

    def __init__(
        self,
        repo: Repo | None = None,
        *,
        workers: int | None = None,
        downloader: Callable[[Sequence[md.ObjectRef]], None] | None = None,
    ) -> None:
        self.repo = repo or Repo()
        self._downloader = downloader
        self.store = open_store(self.repo)
        self._workers = workers or os.cpu_count() or 2
        self._executor: ThreadPoolExecutor | None = None
        self._theta_config: dict[str, str] | None = None
        self._pages = PagePool()  # shared by every file the session cleans
        self._spools: list[BinaryIO] = []  # spooled inputs, closed when the next file starts
        self._replaced: set[str] = set()  # objects a smudge found corrupt and downloaded again
        self._replace_lock = threading.Lock()

    @property
    def _pool(self) -> ThreadPoolExecutor:
        # Made on first use: `git status` on an unchanged checkpoint never needs a worker, and
        # concurrent.futures (with logging) is a tenth of our start-up.
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=self._workers)
        return self._executor

    def _close_spools(self) -> None:
        for spooled in self._spools:
            spooled.close()
        self._spools.clear()

    def close(self) -> None:
        self._close_spools()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        getattr(self._downloader, "close", lambda: None)()
        self.repo.close()

    def __enter__(self) -> FilterSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- clean -------------------------------------------------------------------------

    def clean(
        self,
        src: BinaryIO,
        path: str,
        *,
        policy: UpdatePolicy | None = None,
        report: CleanReport | None = None,
    ) -> bytes:
        """The metadata for the checkpoint read from `src` (the content of `path`).

        Metadata given as input comes back byte for byte, so cleaning is idempotent.
        `policy` says how changed tensors are stored (default: from configuration, see
        git_theta/updates/policy.py); `report` collects what was done.

        Raises:
            CheckpointError: the content is not a checkpoint we can read, or is damaged.
            MetadataError: it starts like our metadata but does not parse.
        """
        self._close_spools()
        head = _read_head(src, PEEK_BYTES)
        if not head:
            return b""  # an empty file stays empty, as with Git LFS
        if md.looks_like_metadata(head):
            data = head + src.read()
            md.decode(data, source=path)
            return data
        fmt, stream = self._open_checkpoint(path, head, src)
        prev_meta = self._previous(path)
        previous, by_name = _reuse_keys(prev_meta)
        policy = policy or self._configured_policy(path)
        if policy.max_chain is None:
            chain = self._config("theta.maxUpdateChain")
            try:
                policy = replace(policy, max_chain=int(chain) if chain else DEFAULT_MAX_CHAIN)
            except ValueError:
                raise ConfigError(f"theta.maxUpdateChain: not a number: {chain!r}") from None
        updater = Updater(
            policy.validate(),
            path,
            self.store,
            report if report is not None else CleanReport(),
        )
        # A clean that fails half-way (a truncated checkpoint) leaves the objects it wrote: each
        # is whole, and another process (a second work tree sharing the store) may already
        # have committed against it. Unreferenced objects are `git theta prune`'s to reclaim.
        buffers = BufferPool()
        split = fmt.split_paged(stream, source=path, pages=self._pages) or fmt.split(
            stream, source=path, buffers=buffers
        )
        stream_of: Iterator[tuple[str, RawTensor | PagedTensor]] = split.tensors
        tensors = with_progress(
            stream_of,
            label=f"git-theta: cleaning {path}",
            total=_file_size(self.repo, path),
            size=lambda item: len(item[1].data),
        )
        params = self._clean_tensors(tensors, previous, by_name, updater, path, buffers)
        updater.check_coverage(set(params))
        layout = None
        if split.layout is not None and not (
            # A version stored without a layout (a merge that changed the parameter set) is
            # checked out with the format's canonical layout; reading that back must give the
            # same metadata, or the work tree would look modified.
            prev_meta is not None
            and prev_meta.layout is None
            and bytes(split.layout) == fmt.canonical_layout(_specs(params))
        ):
            layout = self._store_tensor(
                RawTensor("U8", (len(split.layout),), split.layout), previous
            )
        return md.encode(Metadata(format=fmt.name, layout=layout, params=params))

    def _clean_tensors(
        self,
        tensors: Iterator[tuple[str, RawTensor | PagedTensor]],
        previous: dict[tuple[str, str, tuple[int, ...]], ParamEntry],
        by_name: Mapping[str, ParamEntry],
        updater: Updater,
        path: str,
        buffers: BufferPool,
    ) -> dict[str, ParamEntry]:
        budget = _ByteBudget(INFLIGHT_BYTES)
        done: dict[str, ParamEntry] = {}
        # name -> (the job encoding it, its place in that job's batch)
        pending: dict[str, tuple[Future[list[ParamEntry]], int]] = {}
        jobs: list[Future[list[ParamEntry]]] = []
        batch: list[tuple[str, RawTensor | PagedTensor, str]] = []
        batch_bytes = 0
        seen: set[str] = set()

        def work(
            items: list[tuple[str, RawTensor | PagedTensor, str]], cost: int
        ) -> list[ParamEntry]:
            try:
                return [
                    self._encode_changed(name, tensor, digest, by_name.get(name), updater, buffers)
                    for name, tensor, digest in items
                ]
            finally:
                budget.release(cost)
                for _, tensor, _ in items:
                    _release(tensor, buffers)

        def submit() -> None:
            nonlocal batch, batch_bytes
            budget.acquire(batch_bytes)
            job = self._pool.submit(work, batch, batch_bytes)
            jobs.append(job)
            for i, (name, _, _) in enumerate(batch):
                pending[name] = (job, i)
            batch, batch_bytes = [], 0

        try:
            for name, tensor in tensors:
                if name in seen:
                    _release(tensor, buffers)
                    raise CheckpointError(f"{path}: parameter {name!r} appears twice")
                seen.add(name)
                digest = _content_hash(tensor)
                reused = previous.get((digest, tensor.dtype, tensor.shape))
                own = by_name.get(name)
                if (
                    own is not None
                    and (own.dtype, own.shape) == (tensor.dtype, tensor.shape)
                    and digest in (own.hash, merged_hash(own))
                ):
                    reused = own  # of several entries with these bytes, keep this parameter's
                if reused is not None and name not in updater.adapter:
                    done[name] = reused
                    _release(tensor, buffers)
                    continue
                # Small tensors go to the workers in batches: a job per tensor costs more in
                # thread hand-offs than encoding a tiny tensor does. A large one goes alone.
                if batch and batch_bytes + len(tensor.data) > BATCH_BYTES:
                    submit()
                batch.append((name, tensor, digest))
                batch_bytes += len(tensor.data)
                if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_TENSORS:
                    submit()
            if batch:
                submit()
        finally:
            for _, tensor, _ in batch:  # never submitted: the reader failed
                _release(tensor, buffers)
            # Whatever happened, let the workers finish so no object is left half-written.
            for job in jobs:
                job.exception()
        for name, (job, i) in pending.items():
            done[name] = job.result()[i]
        return done

    def _encode_changed(
        self,
        name: str,
        tensor: RawTensor | PagedTensor,
        digest: str,
        prev: ParamEntry | None,
        updater: Updater,
        buffers: BufferPool,
    ) -> ParamEntry:
        """The entry for a tensor whose bytes no previous entry has."""
        if isinstance(tensor, PagedTensor):
            if not updater.needs_whole(name, tensor.dtype, tensor.shape, prev):
                chunks = encode_paged(tensor.dtype, tensor.shape, tensor.data, digest)
                return ParamEntry(tensor.dtype, tensor.shape, digest, self.store.put(chunks))
            whole = RawTensor(tensor.dtype, tensor.shape, tensor.data.join(buffers))
            try:
                return self._encode_changed(name, whole, digest, prev, updater, buffers)
            finally:
                buffers.give(whole.data)
        if (
            prev is not None
            and name not in updater.adapter
            and updater.same_as(tensor, prev, digest)
        ):
            return prev
        if updater.active:
            entry = updater.encode(name, tensor, prev)
            if entry is not None:
                return entry
            updater.report.count("dense")
        return ParamEntry(
            tensor.dtype, tensor.shape, digest, self.store.put(encode_object(tensor, digest=digest))
        )

    def _configured_policy(self, path: str) -> UpdatePolicy:
        """The update policy from `theta-update` (attribute) or `theta.updateType` and friends
        (git config); the default (auto) when neither is set."""
        kind = self.repo.check_attr(UPDATE_ATTRIBUTE, path) or self._config("theta.updateType")
        adapter = self._config("theta.updatePath")
        rank = self._config("theta.updateRank")
        try:
            return UpdatePolicy(
                kind=kind or DEFAULT_POLICY_KIND,
                path=(self.repo.worktree / adapter) if adapter else None,
                rank=int(rank) if rank else None,
            )
        except ValueError:
            raise ConfigError(f"theta.updateRank: not a number: {rank!r}") from None

    def _store_tensor(
        self,
        tensor: RawTensor,
        previous: Mapping[tuple[str, str, tuple[int, ...]], ParamEntry],
    ) -> ParamEntry:
        digest = content_hash(tensor.data)
        reused = previous.get((digest, tensor.dtype, tensor.shape))
        if reused is not None:
            return reused
        return ParamEntry(
            tensor.dtype, tensor.shape, digest, self.store.put(encode_object(tensor, digest=digest))
        )

    def _previous(self, path: str) -> Metadata | None:
        """The version of `path` in the index, else in HEAD, if it is our metadata.

        A version that does not parse (a hostile or damaged blob) never blocks adding a valid
        checkpoint: it only means fewer objects to reuse, so it is skipped with a warning.
        """
        refused: bytes | None = None
        for spec in (f":{path}", f"HEAD:{path}"):
            blob = self.repo.read_current_blob(spec)
            if blob is None or blob == refused or not md.looks_like_metadata(blob[:PEEK_BYTES]):
                continue
            try:
                return md.decode(blob, source=spec)
            except MetadataError as exc:
                refused = blob
                sys.stderr.write(f"git-theta: warning: {exc}; not reusing its objects\n")
                sys.stderr.flush()
        return None

    def _open_checkpoint(self, path: str, head: bytes, src: BinaryIO) -> tuple[Format, BinaryIO]:
        override = self._format_override(path)
        stream: BinaryIO = _Peeked(head, src)  # type: ignore[assignment]
        if override is not None:
            named = get_format(override)
            return named, stream if named.streams else self._spool(stream)
        streaming = sniff_format(head, None)
        if streaming is not None:
            return streaming, stream
        spooled = self._spool(stream)
        found = sniff_format(head, spooled)
        if found is not None:
            return found, spooled
        spooled.close()
        raise unknown_format(path, head)

    def _spool(self, stream: BinaryIO) -> BinaryIO:
        """The checkpoint in a seekable file: in memory, past SPOOL_MEMORY_BYTES an unlinked
        temp file in the store's tmp dir (on the store's disk, not /tmp's)."""
        tmp_dir = self.store.tmp_dir
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            spooled = tempfile.SpooledTemporaryFile(
                max_size=SPOOL_MEMORY_BYTES, mode="w+b", dir=str(tmp_dir)
            )
        except OSError as exc:
            raise StoreWriteError(
                f"cannot spool the checkpoint to {tmp_dir}: {exc.strerror or exc}", path=tmp_dir
            ) from None
        buf = bytearray(1024 * 1024)
        view = memoryview(buf)
        while n := stream.readinto(view):  # type: ignore[attr-defined]
            try:
                spooled.write(view[:n])
            except OSError as exc:  # a full disk: the unlinked file goes with the close
                spooled.close()
                raise StoreWriteError(
                    f"cannot spool the checkpoint to {tmp_dir}: {exc.strerror or exc}",
                    path=tmp_dir,
                    errno=exc.errno,
                ) from None
        spooled.seek(0)
        self._spools.append(spooled)  # type: ignore[arg-type]
        return spooled  # type: ignore[return-value]

    def _format_override(self, path: str) -> str | None:
        value = self.repo.check_attr(FORMAT_ATTRIBUTE, path)
        if value is not None:
            return value
        return self._config(FORMAT_CONFIG)

    def _config(self, key: str) -> str | None:
        """A `theta.*` git config value; all are read once per session (one git command)."""
        if self._theta_config is None:
            self._theta_config = self.repo.config_section("theta")
        return self._theta_config.get(key.lower()) or None

    def describe(self, src: BinaryIO, path: str) -> dict[str, tuple[str, tuple[int, ...], str]]:
        """name -> (dtype, shape, hash) of a checkpoint or metadata, writing nothing."""
        head = _read_head(src, PEEK_BYTES)
        if md.looks_like_metadata(head):
            meta = md.decode(head + src.read(), source=path)
            return {n: (e.dtype, e.shape, e.hash) for n, e in meta.params.items()}
        fmt, stream = self._open_checkpoint(path, head, src)
        buffers = BufferPool()
        described = {}
        for name, tensor in fmt.split(stream, source=path, buffers=buffers).tensors:
            described[name] = (tensor.dtype, tensor.shape, content_hash(tensor.data))
            buffers.give(tensor.data)
        return described

    # ---- smudge ------------------------------------------------------------------------

    def smudge(self, data: bytes, path: str, out: BinaryIO) -> None:
        """Write the checkpoint that metadata `data` describes to `out`.

        Checks that every object is present before writing a byte.

        Raises:
            PassThrough: `data` is not our metadata (write it out unchanged).
            MissingObjectError: objects are absent; names the parameters and the fix.
            CorruptObjectError: an object does not match its oid; names the parameter.
        """
        try:
            meta = md.decode(data, source=path)
        except md.NotMetadataError:
            raise PassThrough() from None
        self.check_objects(meta, path)
        fmt = get_format(meta.format)
        layout = bytes(self._rebuild(meta.layout, path, "the layout").data) if meta.layout else None
        specs = {name: TensorSpec(e.dtype, e.shape) for name, e in meta.params.items()}
        # A streaming format writes each tensor before it asks for the next, so that tensor's
        # buffer can be decoded into again; others (PyTorch) keep every tensor until the end.
        recycle = BufferPool() if fmt.streams else None
        source = self._tensor_source(meta.params, path, recycle)
        total = sum(e.nbytes for e in meta.params.values())

        def shown(order: Sequence[str]) -> Iterator[RawTensor]:
            return with_progress(
                source(order),
                label=f"git-theta: writing {path}",
                total=total,
                size=lambda t: len(t.data),
            )

        fmt.join(out, layout, specs, shown, source=path)

    def check_objects(self, meta: Metadata, path: str) -> None:
        """Fetch absent objects (one download for the whole checkpoint); raise
        MissingObjectError naming the parameters whose objects are still absent."""
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

    def _download(self, refs: Sequence[md.ObjectRef]) -> None:
        from git_theta.transfer.replace import set_aside_truncated

        set_aside_truncated(self.repo, self.store, refs)  # "missing" by size: a cut-short copy
        if self._downloader is None:
            from git_theta.transfer.ondemand import RemoteDownloader

            self._downloader = RemoteDownloader(self.repo)
        self._downloader(refs)

    def _rebuild(
        self, entry: ParamEntry, path: str, name: str, buffers: BufferPool | None = None
    ) -> RawTensor:
        try:
            try:
                return load_entry(entry, self.store, buffers)
            except CorruptObjectError:
                # A corrupt copy on disk is replaced from the remote and the tensor read once
                # more; nothing of it has been written out yet.
                if not self._replace_corrupt(entry):
                    raise
                return load_entry(entry, self.store, buffers)
        except (StoreError, MetadataError) as exc:
            raise in_context(exc, f"{path}: parameter {name}") from None

    def _replace_corrupt(self, entry: ParamEntry) -> bool:
        from git_theta.transfer.replace import replace_corrupt

        with self._replace_lock:  # worker threads: one download at a time
            return replace_corrupt(
                self.repo, self.store, entry.objects(), self._download, tried=self._replaced
            )

    def _tensor_source(
        self, params: Mapping[str, ParamEntry], path: str, recycle: BufferPool | None = None
    ) -> Callable[[Sequence[str]], Iterator[RawTensor]]:
        def decode(batch: list[str]) -> list[RawTensor]:
            return [self._rebuild(params[name], path, repr(name), recycle) for name in batch]

        def source(order: Sequence[str]) -> Iterator[RawTensor]:
            # Decompress ahead in worker threads, in order, within a byte budget; small
            # tensors in batches (as clean sends them), so a job is never just a hand-off.
            window: deque[tuple[int, Future[list[RawTensor]]]] = deque()
            inflight = 0
            names = iter(order)
            jobs_ahead = max(INFLIGHT_JOBS_PER_WORKER * self._workers, 2)
            try:
                while True:
                    while not window or (inflight < INFLIGHT_BYTES and len(window) < jobs_ahead):
                        batch: list[str] = []
                        size = 0
                        while size < BATCH_BYTES and len(batch) < BATCH_TENSORS:
                            name = next(names, None)
                            if name is None:
                                break
                            batch.append(name)
                            size += params[name].nbytes
                        if not batch:
                            break
                        window.append((size, self._pool.submit(decode, batch)))
                        inflight += size
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
