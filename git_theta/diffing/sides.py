"""One version of a checkpoint, as a diff sees it: its parameters, and their tensors on demand.

A version is either stored (git-theta metadata whose tensors are objects in the local store)
or a file (a real checkpoint: the work tree file, or a blob committed before the path was
tracked). A stored version lists its parameters for free and reads any tensor directly; a
file is read front to back (`scan`), hashing each tensor as it passes.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import BinaryIO

from git_theta import metadata as md
from git_theta import settings
from git_theta.clean import format_override
from git_theta.diffing.records import ParamInfo
from git_theta.errors import CorruptObjectError, MetadataError, in_context
from git_theta.formats import Format, choose_format, get_format
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata
from git_theta.spool import PEEK_BYTES
from git_theta.store import ObjectStore
from git_theta.tensor import RawTensor, content_hash

__all__ = ["FileSide", "Side", "StoredSide", "side_from_bytes", "side_from_file"]

# The format name an empty file reports: it exists, and holds no parameter.
EMPTY_FORMAT = "empty"


class Side(ABC):
    """A version of one checkpoint.

    Attributes:
        label: where it comes from, for messages (`HEAD:model.safetensors`).
    """

    label: str

    @property
    @abstractmethod
    def format(self) -> str:
        """The checkpoint format's name."""

    @property
    @abstractmethod
    def layout_hash(self) -> str | None:
        """Content hash of the non-tensor part of the file, None when the format has none."""

    def layout_values(self) -> dict[str, str] | None:
        """The non-tensor values of the layout by key path (Format.layout_values); None when
        unknown (no layout, a format that cannot name them, its object not fetched)."""
        return None

    @abstractmethod
    def params(self) -> Mapping[str, ParamInfo]:
        """Every parameter, in the order this side reads them fastest."""

    @abstractmethod
    def load(self, name: str) -> RawTensor | None:
        """The tensor of `name`; None when this git-theta cannot rebuild it (an update chain).

        Raises:
            MissingObjectError, CorruptObjectError: a stored object is absent or damaged.
        """

    def missing(self, names: Sequence[str]) -> list[str]:
        """Those of `names` whose tensors cannot be read because objects are not fetched."""
        return []


class StoredSide(Side):
    """A version Git holds as metadata; its tensors are objects in the local store."""

    def __init__(self, meta: Metadata, store: ObjectStore, *, label: str) -> None:
        self.meta = meta
        self.store = store
        self.label = label
        self._params = {
            name: ParamInfo(
                e.dtype,
                e.shape,
                e.hash,
                e.update_type,
                e.stored_bytes,
                # a pack member is told apart by its offset and counted by its own length
                tuple(
                    (f"{r.oid}@{r.offset}" if r.offset is not None else r.oid, r.stored)
                    for r in (e.object, *(r for u in e.updates for r in md.update_refs(u)))
                ),
            )
            for name, e in meta.params.items()
        }

    @property
    def format(self) -> str:
        return self.meta.format

    @property
    def layout_hash(self) -> str | None:
        return self.meta.layout.hash if self.meta.layout else None

    def params(self) -> Mapping[str, ParamInfo]:
        return self._params

    def layout_values(self) -> dict[str, str] | None:
        if self.meta.layout is None or not self.store.has(self.meta.layout.object):
            return None
        from git_theta.updates.rebuild import load_entry

        layout = bytes(load_entry(self.meta.layout, self.store).data)
        return get_format(self.meta.format).layout_values(layout, source=self.label)

    def missing(self, names: Sequence[str]) -> list[str]:
        return [
            n
            for n in names
            if not all(self.store.has(ref) for ref in self.meta.params[n].objects())
        ]

    def load(self, name: str) -> RawTensor | None:
        from git_theta.updates.rebuild import load_entry

        try:
            return load_entry(self.meta.params[name], self.store)
        except (CorruptObjectError, MetadataError) as exc:
            raise in_context(exc, f"{self.label}: parameter {name}") from None


class FileSide(Side):
    """A version that is a real checkpoint file, read through its format.

    Args:
        opener: returns a fresh binary stream of the content, positioned at its start, each
            time it is called (the content is read more than once).
        path: the path in the repository, for the `theta-format` attribute.
        label: for messages.
        repo: to look up a format override; None to rely on sniffing alone.
    """

    def __init__(
        self,
        opener: Callable[[], BinaryIO],
        *,
        path: str,
        label: str,
        repo: Repo | None = None,
    ) -> None:
        self._opener = opener
        self.path = path
        self.label = label
        self._repo = repo
        self._format: Format | None = None
        self._empty = False
        self._params: dict[str, ParamInfo] | None = None
        self._layout_hash: str | None = None
        self._layout: bytes | None = None
        # An open pass through the file that `load` moves forward, so loads in file order
        # cost one read of the file in all.
        self._cursor: Iterator[tuple[str, RawTensor]] | None = None
        self._stream: BinaryIO | None = None

    @property
    def format(self) -> str:
        self.params()
        return EMPTY_FORMAT if self._empty else self._fmt().name

    @property
    def layout_hash(self) -> str | None:
        self.params()
        return self._layout_hash

    def params(self) -> Mapping[str, ParamInfo]:
        if self._params is None:
            for _ in self.scan():
                pass
        assert self._params is not None
        return self._params

    def layout_values(self) -> dict[str, str] | None:
        self.params()
        if self._layout is None or self._empty:
            return None
        return self._fmt().layout_values(self._layout, source=self.label)

    def scan(self) -> Iterator[tuple[str, ParamInfo, RawTensor]]:
        """One pass through the file: each parameter with its hash, and its tensor (valid
        until the next item). `params()` is known once the pass is done."""
        params: dict[str, ParamInfo] = {}
        with self._opener() as stream:
            if not stream.read(1):
                self._empty = True
            else:
                stream.seek(0)
                split = self._fmt(stream).split(stream, source=self.label)
                if split.layout is not None:
                    self._layout = bytes(split.layout)
                    self._layout_hash = content_hash(split.layout)
                for name, tensor in split.tensors:
                    info = ParamInfo(tensor.dtype, tensor.shape, content_hash(tensor.data))
                    params[name] = info
                    yield name, info, tensor
        self._params = params

    def load(self, name: str) -> RawTensor | None:
        for restart in (False, True):
            if restart or self._cursor is None:
                self._close_cursor()
                self._stream = self._opener()
                self._cursor = (
                    self._fmt(self._stream).split(self._stream, source=self.label).tensors
                )
            for found, tensor in self._cursor:
                if found == name:
                    return tensor
        raise KeyError(name)

    def close(self) -> None:
        self._close_cursor()

    def _close_cursor(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = self._cursor = None

    def _fmt(self, stream: BinaryIO | None = None) -> Format:
        if self._format is None:
            if stream is None:
                with self._opener() as f:
                    return self._fmt(f)
            self._format = self._detect(stream)
        return self._format

    def _detect(self, stream: BinaryIO) -> Format:
        """The format named by the `theta-format` attribute or `theta.format` config, else
        the first whose sniff accepts the content (the same choice the clean filter makes)."""
        override = None
        if self._repo is not None:
            override = format_override(self._repo, self.path, settings.FORMAT.read(self._repo))
        head = stream.read(PEEK_BYTES) if not override else b""
        stream.seek(0)
        return choose_format(head, override=override, seekable=lambda: stream, source=self.label)


def side_from_bytes(
    data: bytes, *, path: str, label: str, store: ObjectStore, repo: Repo | None
) -> Side:
    """A stored side when `data` is git-theta metadata, else a file side over the bytes."""
    if md.looks_like_metadata(data[: len(md.MAGIC)]):
        return StoredSide(md.decode(data, source=label), store, label=label)
    return FileSide(lambda: io.BytesIO(data), path=path, label=label, repo=repo)


def side_from_file(
    file: str | os.PathLike[str], *, path: str, label: str, store: ObjectStore, repo: Repo | None
) -> Side:
    """A side for a file on disk: metadata is parsed, a checkpoint is read in place."""
    with open(file, "rb") as f:
        head = f.read(len(md.MAGIC))
        if md.looks_like_metadata(head):
            return side_from_bytes(head + f.read(), path=path, label=label, store=store, repo=repo)
    return FileSide(lambda: open(file, "rb"), path=path, label=label, repo=repo)
