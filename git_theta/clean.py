"""clean: checkpoint -> metadata (the model is git-lfs lfs/gitfilter_clean.go).

Clean hashes every tensor first and compresses only those whose (hash, dtype, shape) the
previous version of the file (in the index, else HEAD) does not already have, so an unchanged
tensor costs one fast hash pass and nothing is written when nothing changed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import BinaryIO, NamedTuple

from git_theta import metadata as md
from git_theta import settings, written
from git_theta.clean_run import CleanRun, ReuseKeys
from git_theta.context import RepoContext
from git_theta.errors import ConfigError, MetadataError
from git_theta.formats import Format, TensorSpec, choose_format
from git_theta.formats.base import PagedTensor
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata, ObjectRef, ParamEntry
from git_theta.pages import PagePool
from git_theta.progress import with_progress
from git_theta.spool import PEEK_BYTES, Peeked, Spools, read_head
from git_theta.store import ObjectStore, encode_object, encode_paged
from git_theta.store.pack import MAX_MEMBER_BYTES, PackBuilder
from git_theta.tensor import BufferPool, RawTensor, content_hash, dtype_nbytes
from git_theta.updates.policy import (
    DEFAULT_MAX_CHAIN,
    DEFAULT_POLICY_KIND,
    CleanReport,
    UpdatePolicy,
    Updater,
)

__all__ = ["Cleaner", "Packed", "format_override"]


def format_override(repo: Repo, path: str, config: str | None) -> str | None:
    """The format named for `path` by the `theta-format` attribute, else by `theta.format`
    (`config`, already read); None to sniff. The clean filter and the diff read it here."""
    return settings.FORMAT_ATTRIBUTE.read(repo, path) or config


def _reuse_keys(prev: Metadata | None) -> tuple[ReuseKeys, dict[str, ParamEntry]]:
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


class Packed(NamedTuple):
    """A dense tensor whose object waits in a PackBuilder, its `member`-th."""

    dtype: str
    shape: tuple[int, ...]
    hash: str
    member: int

    def entry(self, refs: list[ObjectRef]) -> ParamEntry:
        return ParamEntry(self.dtype, self.shape, self.hash, refs[self.member])


def _dense(
    store: ObjectStore,
    tensor: RawTensor | PagedTensor,
    digest: str,
    encode: Callable[[list[int] | None], Iterator[bytes | memoryview]],
    pack: PackBuilder | None,
) -> ParamEntry | Packed:
    """A dense entry: its object (`encode(zplanes)`) stored now, or, for a small tensor,
    added to `pack`."""
    dtype, shape = tensor.dtype, tensor.shape
    if pack is not None and dtype_nbytes(dtype, shape) <= MAX_MEMBER_BYTES:
        return Packed(dtype, shape, digest, pack.add(encode(pack.zplanes(dtype)), dtype))
    return ParamEntry(dtype, shape, digest, store.put(encode(None)))


def _specs(params: Mapping[str, ParamEntry]) -> dict[str, TensorSpec]:
    return {name: TensorSpec(e.dtype, e.shape) for name, e in params.items()}


class Cleaner:
    """Turns checkpoints into metadata, storing changed tensors in `ctx`'s store."""

    def __init__(self, ctx: RepoContext) -> None:
        self.ctx = ctx
        self._pages = PagePool()  # shared by every file this cleaner cleans
        self._spools = Spools(ctx.store)  # spooled inputs, closed when the next file starts

    def close(self) -> None:
        self._spools.close()

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
        self._spools.close()
        resolved = self._policy(path, policy)
        # A policy given by the caller (`git theta add`) or update data (an adapter, a side
        # file) can make new metadata of the same bytes: then the file is read even when
        # `written` knows it.
        fresh = policy is not None or resolved.path is not None or resolved.data is not None
        known, src = (None, src) if fresh else self._written(src, path)
        if known is not None:
            return known  # the file a direct checkout or an add kept, untouched since
        head = read_head(src, PEEK_BYTES)
        if not head:
            return b""  # an empty file stays empty, as with Git LFS
        if md.looks_like_metadata(head):
            data = head + src.read()
            md.decode(data, source=path)
            return data
        fmt, stream = self._open_checkpoint(path, head, src)
        prev_meta = self._previous(path)
        previous, by_name = _reuse_keys(prev_meta)
        updater = Updater(
            resolved.validate(),
            path,
            self.ctx.store,
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
            total=_file_size(self.ctx.repo, path),
            size=lambda item: len(item[1].data),
        )
        params = CleanRun(self, previous, by_name, updater, path, buffers).run(tensors)
        updater.check_coverage(set(params))
        layout = self._layout(fmt, split.layout, params, prev_meta, previous)
        return md.encode(Metadata(format=fmt.name, layout=layout, params=params))

    def _written(self, src: BinaryIO, path: str) -> tuple[bytes | None, BinaryIO]:
        """The metadata git_theta/written.py recorded for `path` when `src` is that file
        unchanged; else the stream to clean (what the check read put back in front)."""
        repo = self.ctx.repo
        if repo.toplevel is None:
            return None, src
        known, consumed = written.lookup(repo.git_dir, repo.toplevel, path, src)
        return known, (Peeked(consumed, src) if consumed else src)  # type: ignore[return-value]

    def _layout(
        self,
        fmt: Format,
        layout: bytes | None,
        params: Mapping[str, ParamEntry],
        prev_meta: Metadata | None,
        previous: ReuseKeys,
    ) -> ParamEntry | None:
        """The entry of the checkpoint's layout (what it holds besides tensors), if any."""
        if layout is None or (
            # A version stored without a layout (a merge that changed the parameter set) is
            # checked out with the format's canonical layout; reading that back must give the
            # same metadata, or the work tree would look modified.
            prev_meta is not None
            and prev_meta.layout is None
            and bytes(layout) == fmt.canonical_layout(_specs(params))
        ):
            return None
        return self.store_tensor(RawTensor("U8", (len(layout),), layout), previous)

    def describe(self, src: BinaryIO, path: str) -> dict[str, tuple[str, tuple[int, ...], str]]:
        """name -> (dtype, shape, hash) of a checkpoint or metadata, writing nothing."""
        head = read_head(src, PEEK_BYTES)
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

    def _policy(self, path: str, given: UpdatePolicy | None) -> UpdatePolicy:
        """`given`, else the policy from `theta-update` (attribute) or `theta.updateType` and
        friends (git config), DEFAULT_POLICY_KIND when neither is set; its chain limit from
        `theta.maxUpdateChain` when it names none."""
        config = self.ctx.config
        policy = given
        if policy is None:
            kind = settings.UPDATE_ATTRIBUTE.read(self.ctx.repo, path) or config(
                settings.UPDATE_TYPE
            )
            adapter = config(settings.UPDATE_PATH)
            rank = config(settings.UPDATE_RANK)
            try:
                policy = UpdatePolicy(
                    kind=kind or DEFAULT_POLICY_KIND,
                    path=(self.ctx.repo.worktree / adapter) if adapter else None,
                    rank=int(rank) if rank else None,
                )
            except ValueError:
                raise ConfigError(f"{settings.UPDATE_RANK.name}: not a number: {rank!r}") from None
        if policy.max_chain is None:
            chain = config(settings.MAX_UPDATE_CHAIN)
            try:
                policy = replace(policy, max_chain=int(chain) if chain else DEFAULT_MAX_CHAIN)
            except ValueError:
                raise ConfigError(
                    f"{settings.MAX_UPDATE_CHAIN.name}: not a number: {chain!r}"
                ) from None
        return policy

    def encode_changed(
        self,
        name: str,
        tensor: RawTensor | PagedTensor,
        digest: str,
        prev: ParamEntry | None,
        updater: Updater,
        buffers: BufferPool,
        pack: PackBuilder | None = None,
    ) -> ParamEntry | Packed:
        """The entry for a tensor whose bytes no previous entry has; with `pack`, a small
        tensor stored dense is added to it instead, and its entry is made once the pack is
        stored (`Packed.entry`)."""
        store = self.ctx.store
        if isinstance(tensor, PagedTensor):
            star = updater.takes_pages(name, tensor.dtype, tensor.shape, prev)
            if star and (entry := updater.encode_pages(name, tensor, prev, digest)) is not None:
                return entry
            if star or not updater.needs_whole(name, tensor.dtype, tensor.shape, prev):
                data = tensor.data
                return _dense(
                    store,
                    tensor,
                    digest,
                    lambda z: encode_paged(tensor.dtype, tensor.shape, data, digest, z),
                    pack,
                )
            whole = RawTensor(tensor.dtype, tensor.shape, tensor.data.join(buffers))
            try:
                return self.encode_changed(name, whole, digest, prev, updater, buffers, pack)
            finally:
                buffers.give(whole.data)
        if (
            prev is not None
            and name not in updater.adapter
            and updater.same_as(tensor, prev, digest)
        ):
            return prev
        if updater.active:
            entry = updater.encode(name, tensor, prev, digest)
            if entry is not None:
                return entry
            updater.report.count("dense")
        raw = tensor
        return _dense(
            store, tensor, digest, lambda z: encode_object(raw, digest=digest, zplanes=z), pack
        )

    def store_tensor(
        self, tensor: RawTensor, previous: Mapping[tuple[str, str, tuple[int, ...]], ParamEntry]
    ) -> ParamEntry:
        """The entry for `tensor`: a previous one with its bytes, else a new dense object."""
        digest = content_hash(tensor.data)
        reused = previous.get((digest, tensor.dtype, tensor.shape))
        if reused is not None:
            return reused
        oid = self.ctx.store.put(encode_object(tensor, digest=digest))
        return ParamEntry(tensor.dtype, tensor.shape, digest, oid)

    def _previous(self, path: str) -> Metadata | None:
        """The version of `path` in the index, else in HEAD, if it is our metadata.

        A version that does not parse (a hostile or damaged blob) never blocks adding a valid
        checkpoint: it only means fewer objects to reuse, so it is skipped with a warning.
        """
        refused: bytes | None = None
        for spec in (f":{path}", f"HEAD:{path}"):
            blob = self.ctx.repo.read_current_blob(spec)
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
        stream: BinaryIO = Peeked(head, src)  # type: ignore[assignment]
        spooled: BinaryIO | None = None

        def seekable() -> BinaryIO:
            nonlocal spooled
            spooled = self._spools.spool(stream)
            return spooled

        fmt = choose_format(
            head,
            override=format_override(self.ctx.repo, path, self.ctx.config(settings.FORMAT)),
            seekable=seekable,
            source=path,
        )
        if spooled is None and not fmt.streams:
            seekable()
        return fmt, stream if spooled is None else spooled
