"""safetensors, parsed from its header and streamed tensor by tensor; no torch, no copy.

File: 8-byte little-endian header length N, N bytes of JSON header (name -> {dtype, shape,
data_offsets}, optional "__metadata__"), then the tensor bytes. The header is kept verbatim
as the layout, so a round trip is byte-identical (key order, padding, metadata included).
Spec: https://github.com/huggingface/safetensors#format
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from git_theta.errors import CheckpointError
from git_theta.formats.base import (
    Format,
    PagedSplit,
    PagedTensor,
    Placement,
    Split,
    TensorSource,
    TensorSpec,
    read_exact,
    short_repr,
)
from git_theta.limits import check_json_depth, checked_nbytes, has_lone_surrogate_escape
from git_theta.pages import RUN_BYTES, SMALL_BYTES, PagePool, read_pages, split_run
from git_theta.tensor import KNOWN_DTYPES, BufferPool, RawTensor, dtype_nbytes, storage_itemsize

__all__ = ["SafetensorsFormat"]

# The reference implementation refuses headers above 100 MB; so do we, before allocating.
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"
_ALIGNMENT = 8


class _Entry:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _encodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_header(raw: bytes | bytearray | memoryview, *, source: str) -> list[_Entry]:
    """The tensors a header describes, in file order, after checking that its offsets tile
    the data section exactly: no gaps, no overlaps, sizes that match dtype and shape."""
    data = bytes(raw)
    try:
        check_json_depth(data)
        header = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{source}: safetensors header is not valid UTF-8: {exc}") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: pre-scanned, kept as a guard
        raise CheckpointError(f"{source}: safetensors header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source}: safetensors header is not a JSON object")
    surrogates = has_lone_surrogate_escape(data)
    entries = []
    for name, info in header.items():
        if name == METADATA_KEY:
            continue
        if surrogates and not _encodable(name):
            raise CheckpointError(
                f"{source}: tensor name {name!r} is not valid Unicode (a lone surrogate); "
                "rename the tensor"
            )
        try:
            dtype = info["dtype"]
            shape = tuple(info["shape"])
            begin, end = info["data_offsets"]
            ok = (
                isinstance(dtype, str)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
                and isinstance(begin, int)
                and isinstance(end, int)
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{source}: parameter {name!r}: malformed safetensors entry")
        if dtype not in KNOWN_DTYPES:
            raise CheckpointError(f"{source}: parameter {name!r}: unsupported dtype {dtype!r}")
        try:
            size = checked_nbytes(dtype, shape)
        except ValueError as exc:
            raise CheckpointError(f"{source}: parameter {name!r}: {exc}") from None
        if not 0 <= begin <= end or end - begin != size:
            raise CheckpointError(
                f"{source}: parameter {name!r}: data_offsets [{begin}, {end}] do not hold "
                f"{dtype} {list(shape)} ({size} bytes)"
            )
        entries.append(_Entry(name, dtype, shape, begin, end))
    entries.sort(key=lambda e: (e.begin, e.end))
    position = 0
    for entry in entries:
        if entry.begin != position:
            kind = "overlaps the previous tensor" if entry.begin < position else "leaves a gap"
            raise CheckpointError(
                f"{source}: parameter {entry.name!r}: data_offsets start at {entry.begin}, "
                f"expected {position} (header {kind})"
            )
        position = entry.end
    return entries


def _small_run(entries: list[_Entry], start: int) -> list[int]:
    """The sizes of the small tensors from `start` on that one read takes (at least one)."""
    sizes: list[int] = []
    total = 0
    for e in entries[start:]:
        size = e.end - e.begin
        if size >= SMALL_BYTES or (sizes and total + size > RUN_BYTES):
            break
        sizes.append(size)
        total += size
    return sizes


def _check_end(stream: BinaryIO, source: str) -> None:
    if stream.read(1):
        raise CheckpointError(f"{source}: bytes after the last tensor the header describes")


class SafetensorsFormat(Format):
    name = "safetensors"
    streams = True

    def sniff(self, head: bytes, file: BinaryIO | None) -> bool:
        if len(head) < 9:
            return False
        (n,) = struct.unpack("<Q", head[:8])
        return 2 <= n <= MAX_HEADER_BYTES and head[8:9] == b"{"

    def split(self, stream: BinaryIO, *, source: str, buffers: BufferPool | None = None) -> Split:
        layout, entries = self._header(stream, source)
        return Split(layout, self._tensors(stream, entries, source, buffers))

    def layout_values(self, layout: bytes, *, source: str) -> dict[str, str] | None:
        # The layout is the verbatim header (8-byte length, then JSON); only its metadata
        # holds values of its own, the rest describes the tensors.
        try:
            header = json.loads(layout[8:])
        except ValueError:
            return None
        found = header.get(METADATA_KEY) if isinstance(header, dict) else None
        if not isinstance(found, dict):
            return {}
        return {f"{METADATA_KEY}/{k}": short_repr(v) for k, v in found.items()}

    def split_paged(self, stream: BinaryIO, *, source: str, pages: PagePool) -> PagedSplit:
        layout, entries = self._header(stream, source)
        return PagedSplit(layout, self._paged_tensors(stream, entries, source, pages))

    @staticmethod
    def _header(stream: BinaryIO, source: str) -> tuple[bytes, list[_Entry]]:
        prefix = read_exact(stream, 8, source=source, what="the header length")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(f"{source}: safetensors header claims {n} bytes (limit 100 MB)")
        raw = read_exact(stream, n, source=source, what="the safetensors header")
        return bytes(prefix) + bytes(raw), parse_header(raw, source=source)

    @staticmethod
    def _tensors(
        stream: BinaryIO, entries: list[_Entry], source: str, buffers: BufferPool | None
    ) -> Iterator[tuple[str, RawTensor]]:
        for e in entries:
            data = read_exact(
                stream,
                e.end - e.begin,
                source=source,
                what=f"parameter {e.name!r}",
                buffers=buffers,
            )
            yield e.name, RawTensor(e.dtype, e.shape, data)
        _check_end(stream, source)

    @staticmethod
    def _paged_tensors(
        stream: BinaryIO, entries: list[_Entry], source: str, pages: PagePool
    ) -> Iterator[tuple[str, PagedTensor]]:
        i = 0
        while i < len(entries):
            e = entries[i]
            size = e.end - e.begin
            if size >= SMALL_BYTES:
                what = f"parameter {e.name!r}"
                data = read_pages(stream, size, pages, source=source, what=what)
                yield e.name, PagedTensor(e.dtype, e.shape, data)
                i += 1
                continue
            run = _small_run(entries, i)
            last = entries[i + len(run) - 1].name
            what = (
                f"parameter {last!r}"
                if len(run) == 1
                else f"parameters {entries[i].name!r} to {last!r}"
            )
            buf = read_exact(stream, sum(run), source=source, what=what)
            datas = split_run(buf, run, pages)
            for e, data in zip(entries[i : i + len(run)], datas, strict=True):
                yield e.name, PagedTensor(e.dtype, e.shape, data)
            i += len(run)
        _check_end(stream, source)

    def join(
        self,
        out: BinaryIO,
        layout: bytes | None,
        specs: Mapping[str, TensorSpec],
        tensors: TensorSource,
        *,
        source: str,
    ) -> None:
        layout, entries = self._checked_layout(layout, specs, source)
        out.write(layout)
        for tensor in tensors([e.name for e in entries]):
            out.write(tensor.data)

    def place(
        self, layout: bytes | None, specs: Mapping[str, TensorSpec], *, source: str
    ) -> Placement:
        # The header says where every tensor starts, and the tensors tile the rest.
        layout, entries = self._checked_layout(layout, specs, source)
        offsets = {e.name: len(layout) + e.begin for e in entries}
        return Placement(layout, offsets, len(layout) + (entries[-1].end if entries else 0))

    def _checked_layout(
        self, layout: bytes | None, specs: Mapping[str, TensorSpec], source: str
    ) -> tuple[bytes, list[_Entry]]:
        if layout is None:
            layout = self._fresh_header(specs)
        entries = parse_header(layout[8:], source=source)
        described = {e.name: TensorSpec(e.dtype, e.shape) for e in entries}
        if described != dict(specs):
            raise CheckpointError(
                f"{source}: the stored safetensors header does not match its parameters"
            )
        return layout, entries

    def canonical_layout(self, specs: Mapping[str, TensorSpec]) -> bytes | None:
        return self._fresh_header(specs)

    @staticmethod
    def _fresh_header(specs: Mapping[str, TensorSpec]) -> bytes:
        # Largest alignment first, then by name, as the safetensors writer orders data.
        order = sorted(specs, key=lambda n: (-storage_itemsize(specs[n].dtype), n))
        header: dict[str, Any] = {}
        offset = 0
        for name in order:
            spec = specs[name]
            size = dtype_nbytes(spec.dtype, spec.shape)
            header[name] = {
                "dtype": spec.dtype,
                "shape": list(spec.shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % _ALIGNMENT)
        return struct.pack("<Q", len(text)) + text
