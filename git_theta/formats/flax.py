"""Flax msgpack checkpoints (`flax.serialization.to_bytes`, Hugging Face `flax_model.msgpack`),
read and written with msgpack's wire format alone: no JAX, no flax.

File: one msgpack map (the state dict), nested maps of parameters. An array leaf is a msgpack
extension of type 1 (a numpy scalar: type 3) whose payload is itself msgpack: the array
`[shape, dtype name, C-order bytes]` (`float32`, `bfloat16`, ...; native byte order, which is
little-endian on every platform flax runs on). Other leaves (step counters, strings) are plain
msgpack. Arrays above 1 GiB are written by flax as a map `{"__msgpack_chunked_array__": true,
"shape": ..., "chunks": {"0": ..., ...}}`; each chunk is then a parameter of its own.
Spec: flax/serialization.py (`_ndarray_to_bytes`, `_MsgpackExtType`, `_chunk`) and
https://github.com/msgpack/msgpack/blob/master/spec.md

Each array is a parameter named by its path of map keys (list items by index) joined with
"/", as in the PyTorch format. The layout is the file with every array node cut out and a
msgpack nil left in its place (the *skeleton*, itself valid msgpack), plus, per array, the exact
bytes of its extension and array headers. Join writes the skeleton back around the tensors, so
every file comes back byte for byte, whatever wrote it; a tensor whose dtype or shape changed
gets headers as flax writes them.

The file is walked with our own bounded reader: nesting depth, shapes and sizes are checked
against the file's size before anything is allocated.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import msgpack

from git_theta.errors import CheckpointError
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec, read_exact, short_repr
from git_theta.formats.flax_wire import (
    EXT_NDARRAY,
    EXT_NPSCALAR,
    FIXEXT,
    FLAX_DTYPES,
    MAX_DEPTH,
    NAMES_OF,
    NIL,
    SNIFF_BYTES,
    Array,
    Bad,
    Cursor,
    Layout,
    array_header,
    length,
    node,
    read_layout,
)
from git_theta.limits import checked_nbytes
from git_theta.tensor import BufferPool, RawTensor

__all__ = ["FLAX_DTYPES", "FlaxFormat", "LAYOUT_VERSION"]

LAYOUT_VERSION = 1


def _ext_header(size: int, code: int) -> bytes:
    """The extension header msgpack writes for a payload of `size` bytes."""
    for marker, n in FIXEXT.items():
        if size == n:
            return bytes((marker, code))
    if size < 1 << 8:
        return bytes((0xC7, size, code))
    if size < 1 << 16:
        return b"\xc8" + struct.pack(">H", size) + bytes((code,))
    return b"\xc9" + struct.pack(">I", size) + bytes((code,))


def _head(spec: TensorSpec, *, where: str) -> bytes:
    """The headers flax writes before an array of `spec`'s bytes."""
    name = NAMES_OF.get(spec.dtype)
    if name is None:
        raise CheckpointError(f"{where}: flax checkpoints cannot hold {spec.dtype} arrays")
    nbytes = checked_nbytes(spec.dtype, list(spec.shape))
    if nbytes < 1 << 8:
        data_header = bytes((0xC4, nbytes))
    elif nbytes < 1 << 16:
        data_header = b"\xc5" + struct.pack(">H", nbytes)
    else:
        data_header = b"\xc6" + struct.pack(">I", nbytes)
    inner = b"\x93" + msgpack.packb(list(spec.shape)) + msgpack.packb(name) + data_header
    return _ext_header(len(inner) + nbytes, EXT_NDARRAY) + inner


def _encode_layout(layout: Layout) -> bytes:
    arrays = [[a.name, a.offset, a.head] for a in layout.arrays]
    return msgpack.packb({"version": LAYOUT_VERSION, "skeleton": layout.skeleton, "arrays": arrays})


def _decode_layout(raw: bytes, *, source: str) -> Layout:
    malformed = CheckpointError(f"{source}: the stored flax layout is malformed")
    try:
        doc: Any = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError):
        raise malformed from None
    if not isinstance(doc, dict) or doc.get("version") != LAYOUT_VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        if isinstance(version, int) and version > LAYOUT_VERSION:
            raise CheckpointError(
                f"{source}: flax layout version {version} is newer than this git-theta reads "
                f"({LAYOUT_VERSION}); upgrade git-theta"
            )
        raise malformed
    skeleton, entries = doc.get("skeleton"), doc.get("arrays")
    if not isinstance(skeleton, bytes) or not isinstance(entries, list):
        raise malformed
    arrays: list[Array] = []
    last = -1
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and isinstance(entry[2], bytes)
            and last < entry[1] < len(skeleton)
            and skeleton[entry[1]] == NIL
        ):
            raise malformed
        name, offset, head = entry
        last = offset
        arrays.append(_parse_head(name, offset, head, malformed))
    if len({a.name for a in arrays}) != len(arrays):
        raise malformed
    return Layout(skeleton, arrays)


def _parse_head(name: str, offset: int, head: bytes, malformed: CheckpointError) -> Array:
    """A stored array header, checked to describe exactly its array's bytes."""
    cur = Cursor(io.BytesIO(head), len(head))
    try:
        b = cur.take(1, "head")[0]
        if b in FIXEXT:
            size = FIXEXT[b]
        elif b in (0xC7, 0xC8, 0xC9):
            size = length(cur, {0xC7: 1, 0xC8: 2, 0xC9: 4}[b], "head", copy=False)[0]
        else:
            raise malformed
        if cur.take(1, "head")[0] not in (EXT_NDARRAY, EXT_NPSCALAR):
            raise malformed
        dtype_name, shape, nbytes, inner = array_header(cur, size, name)
    except Bad:
        raise malformed from None
    if cur.file.tell() != len(head) or len(inner) + nbytes != size:
        raise malformed
    return Array(name, offset, head, FLAX_DTYPES[dtype_name], shape, -1)


def _fresh_layout(specs: Mapping[str, TensorSpec], *, source: str) -> Layout:
    """Nested maps by "/" in name order, as flax writes a state dict; a flat map when the
    names do not nest (both `a` and `a/b`)."""
    tree: dict[str, Any] = {}
    nested = True
    for name in sorted(specs):
        parts = name.split("/")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                nested = False
                break
            node = child
        if not nested or parts[-1] in node:
            nested = False
            break
        node[parts[-1]] = name
    if not nested:
        tree = {name: name for name in sorted(specs)}
    skeleton = bytearray()
    arrays: list[Array] = []

    def emit(node: dict[str, Any]) -> None:
        skeleton.extend(_map_header(len(node)))
        for key, value in node.items():
            skeleton.extend(msgpack.packb(key))
            if isinstance(value, dict):
                emit(value)
                continue
            spec = specs[value]
            head = _head(spec, where=f"{source}: parameter {value!r}")
            arrays.append(Array(value, len(skeleton), head, spec.dtype, tuple(spec.shape), -1))
            skeleton.append(NIL)

    emit(tree)
    return Layout(bytes(skeleton), arrays)


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


class FlaxFormat(Format):
    """`flax.serialization.to_bytes` checkpoints; see the module docstring."""

    name = "flax"
    streams = False

    def sniff(self, head: bytes, file: BinaryIO | None) -> bool:
        if file is None or not head or not (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
            return False
        # Read a bounded prefix; a file whose first array lies past it is not taken for flax
        # unless named with the theta-format attribute.
        prefix = file.read(SNIFF_BYTES)
        cur = Cursor(io.BytesIO(prefix), len(prefix))
        arrays: list[Array] = []
        try:
            node(cur, (), 0, arrays, set())
        except Bad:
            return bool(arrays)
        return bool(arrays) and cur.file.tell() == len(prefix)

    def split(self, stream: BinaryIO, *, source: str, buffers: BufferPool | None = None) -> Split:
        layout = read_layout(stream, source)

        def tensors() -> Iterator[tuple[str, RawTensor]]:
            for a in layout.arrays:
                stream.seek(a.data_at)
                n = checked_nbytes(a.dtype, list(a.shape))
                data = read_exact(
                    stream, n, source=source, what=f"parameter {a.name!r}", buffers=buffers
                )
                yield a.name, RawTensor(a.dtype, a.shape, data)

        return Split(_encode_layout(layout), tensors())

    def canonical_layout(self, specs: Mapping[str, TensorSpec]) -> bytes | None:
        try:
            return _encode_layout(_fresh_layout(specs, source="flax"))
        except CheckpointError:
            return None

    def layout_values(self, layout: bytes, *, source: str) -> dict[str, str] | None:
        parsed = _decode_layout(layout, source=source)
        arrays = {a.name for a in parsed.arrays}
        try:
            doc = msgpack.unpackb(parsed.skeleton, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException, TypeError):
            return None
        values: dict[str, str] = {}

        def visit(node: Any, path: tuple[str, ...]) -> None:
            if len(path) > MAX_DEPTH:
                return
            if isinstance(node, dict):
                for key, value in node.items():
                    visit(value, (*path, str(key)))
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    visit(value, (*path, str(i)))
            elif "/".join(path) not in arrays:
                values["/".join(path)] = short_repr(node)

        visit(doc, ())
        return values

    def join(
        self,
        out: BinaryIO,
        layout: bytes | None,
        specs: Mapping[str, TensorSpec],
        tensors: TensorSource,
        *,
        source: str,
    ) -> None:
        parsed = (
            _fresh_layout(specs, source=source)
            if layout is None
            else _decode_layout(layout, source=source)
        )
        if {a.name for a in parsed.arrays} != specs.keys():
            raise CheckpointError(f"{source}: the stored flax layout does not match its parameters")
        stream = tensors([a.name for a in parsed.arrays])
        at = 0
        for a in parsed.arrays:
            where = f"{source}: parameter {a.name!r}"
            raw = next(stream, None)
            if raw is None:
                raise CheckpointError(f"{where} was not supplied")
            spec = specs[a.name]
            if (raw.dtype, tuple(raw.shape)) != (spec.dtype, tuple(spec.shape)):
                raise CheckpointError(
                    f"{where}: got {raw.dtype} {list(raw.shape)}, "
                    f"expected {spec.dtype} {list(spec.shape)}"
                )
            same = (a.dtype, a.shape) == (spec.dtype, tuple(spec.shape))
            out.write(parsed.skeleton[at : a.offset])
            out.write(a.head if same else _head(spec, where=where))
            out.write(raw.data)
            at = a.offset + 1
        out.write(parsed.skeleton[at:])
