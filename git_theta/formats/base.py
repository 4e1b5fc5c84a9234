"""What a checkpoint format must do: split a file into tensors plus a layout, and join them back.

A format is stateless. `split` reads a checkpoint and yields its tensors in file order, with a
`layout`: whatever bytes (a header, a pickle skeleton) the format needs to rebuild the same
file. `join` writes the checkpoint again from the layout and the tensors. Tensors cross this
boundary as RawTensor (dtype name, shape, raw bytes), so formats never import each other's
frameworks.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import BinaryIO, ClassVar, NamedTuple

from git_theta.errors import CheckpointError
from git_theta.pages import PagedBytes, PagePool
from git_theta.tensor import BufferPool, RawTensor, allocate

__all__ = [
    "Format",
    "PagedSplit",
    "PagedTensor",
    "Placement",
    "Split",
    "TensorSource",
    "TensorSpec",
    "read_exact",
    "short_repr",
]


class TensorSpec(NamedTuple):
    """What `join` is told about a parameter before its bytes arrive."""

    dtype: str
    shape: tuple[int, ...]


TensorSource = Callable[[Sequence[str]], Iterator[RawTensor]]
"""Given parameter names in the order a format writes them, yields their tensors in that order."""


class Split(NamedTuple):
    """A checkpoint taken apart. `tensors` is lazy: a streaming format reads as it yields."""

    layout: bytes | None
    tensors: Iterator[tuple[str, RawTensor]]


class PagedTensor(NamedTuple):
    """A tensor whose bytes sit in pages (git_theta/pages.py); whoever takes it releases them."""

    dtype: str
    shape: tuple[int, ...]
    data: PagedBytes


class Placement(NamedTuple):
    """Where a checkpoint's bytes go, known before any tensor is decoded: `head` at offset 0,
    each tensor's raw bytes at its offset, and nothing else, `size` bytes in all."""

    head: bytes
    offsets: dict[str, int]
    size: int


class PagedSplit(NamedTuple):
    layout: bytes | None
    tensors: Iterator[tuple[str, PagedTensor]]


class Format(ABC):
    """A checkpoint format.

    Subclasses set `name` and implement `sniff`, `split` and `join`; `load` and `save` come
    for free. They raise CheckpointError, naming the file (`source`) and the parameter, for
    any input they cannot take; they never execute code from the input.
    """

    name: ClassVar[str]
    #: True when `split` reads the stream front to back, so clean can pass git's pipe straight
    #: in; False when the format needs a seekable file (zip archives).
    streams: ClassVar[bool] = False

    @abstractmethod
    def sniff(self, head: bytes, file: BinaryIO | None) -> bool:
        """Whether this is our format, from the first bytes and, if given, the seekable file."""

    @abstractmethod
    def split(self, stream: BinaryIO, *, source: str, buffers: BufferPool | None = None) -> Split:
        """Read a checkpoint (positioned at its first byte) into its layout and tensors.

        `buffers`: when given, a streaming format takes tensor buffers from it, so the caller
        can give back those it is done with; formats that load whole files may ignore it.
        """

    def split_paged(self, stream: BinaryIO, *, source: str, pages: PagePool) -> PagedSplit | None:
        """`split` with each tensor read into pages from `pages`, for a streaming format; None
        for one that cannot (the caller then uses `split`)."""
        return None

    @abstractmethod
    def join(
        self,
        out: BinaryIO,
        layout: bytes | None,
        specs: Mapping[str, TensorSpec],
        tensors: TensorSource,
        *,
        source: str,
    ) -> None:
        """Write the checkpoint: the same bytes as split's input when `layout` came from split,
        a fresh canonical file of `specs` when `layout` is None."""

    def place(
        self, layout: bytes | None, specs: Mapping[str, TensorSpec], *, source: str
    ) -> Placement | None:
        """Where `join` would put each byte, when that is known before the tensors are: the
        file `join` writes must be exactly `head` plus each tensor's raw bytes at its offset.
        None (the default) when a byte depends on the tensors (a zip's CRCs, compression,
        a pickle): such a format is written through `join`. Raises what `join` raises for a
        layout that does not match `specs`."""
        return None

    def canonical_layout(self, specs: Mapping[str, TensorSpec]) -> bytes | None:
        """The layout `split` reads from the file `join` writes for `specs` without a layout,
        when the format can tell without writing it; None otherwise."""
        return None

    def layout_values(self, layout: bytes, *, source: str) -> dict[str, str] | None:
        """The values the layout holds besides tensors (a step counter, a config entry, a
        header's metadata), by key path, each as short text for a diff; None when the format
        cannot name them (a diff then says only that the layout changed)."""
        return None

    def load(self, path: str | os.PathLike[str]) -> dict[str, RawTensor]:
        """Every tensor of the checkpoint at `path`, by name."""
        with open(path, "rb") as f:
            return dict(self.split(f, source=str(path)).tensors)

    def save(self, params: Mapping[str, RawTensor], path: str | os.PathLike[str]) -> None:
        """Write `params` as a new checkpoint at `path` (atomically: temp file, then rename)."""
        specs = {name: TensorSpec(t.dtype, t.shape) for name, t in params.items()}
        from git_theta.atomic import atomic_write

        with atomic_write(path) as f:
            self.join(f, None, specs, lambda names: (params[n] for n in names), source=str(path))


# A value in a diff line is cut here: a layout may hold a long string or a big config dict.
SHORT_REPR_CHARS = 60


def short_repr(value: object) -> str:
    """`repr(value)` cut to SHORT_REPR_CHARS, for one line of a diff."""
    text = repr(value)
    return text if len(text) <= SHORT_REPR_CHARS else text[: SHORT_REPR_CHARS - 3] + "..."


def read_exact(
    stream: BinaryIO, n: int, *, source: str, what: str, buffers: BufferPool | None = None
) -> memoryview:
    """Read exactly `n` bytes or raise CheckpointError saying the file is truncated in `what`
    (or that `n`, which a file's header declared, is more than memory can hold)."""
    try:
        view = buffers.take(n) if buffers is not None else allocate(n)
    except (MemoryError, OSError) as exc:
        raise CheckpointError(
            f"{source}: {what} declares {n} bytes, more than this machine can allocate ({exc})"
        ) from None
    got = 0
    while got < n:
        k = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not k:
            raise CheckpointError(
                f"{source}: truncated checkpoint: {what} needs {n} bytes, the file ends after {got}"
            )
        got += k
    return view
