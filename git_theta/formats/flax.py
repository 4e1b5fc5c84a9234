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
from typing import Any, BinaryIO, NamedTuple

import msgpack

from git_theta.errors import CheckpointError
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec, read_exact, short_repr
from git_theta.limits import MAX_JSON_DEPTH, MAX_NDIM, checked_nbytes
from git_theta.tensor import BufferPool, RawTensor

__all__ = ["FLAX_DTYPES", "FlaxFormat", "LAYOUT_VERSION"]

LAYOUT_VERSION = 1
# flax's extension type codes (flax.serialization._MsgpackExtType).
_EXT_NDARRAY = 1
_EXT_NPSCALAR = 3
_NIL = 0xC0
# State dicts nest a handful of levels (params/encoder/layer_0/attention/query/kernel).
MAX_DEPTH = MAX_JSON_DEPTH
# A non-array leaf (a string, a bytes blob) is copied into the layout; like a safetensors
# header, the layout is refused past this size.
MAX_LAYOUT_BYTES = 100_000_000
# The first bytes looked at when sniffing: enough to reach the first array of any real file.
_SNIFF_BYTES = 1 << 20

# numpy's dtype names as flax writes them (`arr.dtype.name`; ml_dtypes for bf16 and fp8).
FLAX_DTYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "uint16": "U16",
    "int16": "I16",
    "uint32": "U32",
    "int32": "I32",
    "uint64": "U64",
    "int64": "I64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
    "complex64": "C64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e8m0fnu": "F8_E8M0",
}
_NAMES_OF = {ours: theirs for theirs, ours in FLAX_DTYPES.items()}

# Fixed-width scalar types: type byte -> payload bytes (float32/64, uint8-64, int8-64).
_FIXED = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_LEN_WIDTH = {1: ">B", 2: ">H", 4: ">I"}


class _Array(NamedTuple):
    """One array of the file: where its placeholder sits in the skeleton and its headers."""

    name: str
    offset: int  # of the nil in the skeleton
    head: bytes  # extension header + type code + array header up to the data
    dtype: str
    shape: tuple[int, ...]
    data_at: int  # where its bytes start in the file (-1 for a stored layout)


class _Layout(NamedTuple):
    skeleton: bytes
    arrays: list[_Array]


class _Bad(Exception):
    """The walk found something that is not a flax msgpack file; the message says what."""


class _Cursor:
    """Reads a seekable file front to back, copying what it reads into the skeleton."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.size = file, size
        self.skeleton = bytearray()

    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.file.tell():
            raise _Bad(f"truncated: {what} needs {n} bytes past the end of the file")
        data = self.file.read(n)
        if len(data) != n:
            raise _Bad(f"truncated: {what} needs {n} bytes, the file ends early")
        return data

    def copy(self, n: int, what: str) -> bytes:
        data = self.take(n, what)
        self.skeleton += data
        if len(self.skeleton) > MAX_LAYOUT_BYTES:
            raise _Bad(f"more than {MAX_LAYOUT_BYTES} bytes outside arrays")
        return data


def _length(cur: _Cursor, width: int, what: str, *, copy: bool = True) -> tuple[int, bytes]:
    raw = cur.copy(width, what) if copy else cur.take(width, what)
    return struct.unpack(_LEN_WIDTH[width], raw)[0], raw


def _scan(cur: _Cursor) -> list[_Array]:
    """Walk the whole document, filling `cur.skeleton` and returning its arrays."""
    arrays: list[_Array] = []
    first = cur.take(1, "the document")[0]
    if not (0x80 <= first <= 0x8F or first in (0xDE, 0xDF)):
        raise _Bad("the document is not a msgpack map (a flax state dict)")
    cur.file.seek(-1, io.SEEK_CUR)
    _node(cur, (), 0, arrays, set())
    if cur.file.tell() != cur.size:
        raise _Bad(f"{cur.size - cur.file.tell()} bytes follow the msgpack document")
    return arrays


def _node(
    cur: _Cursor, path: tuple[str, ...], depth: int, arrays: list[_Array], names: set[str]
) -> None:
    if depth > MAX_DEPTH:
        raise _Bad(f"nested deeper than {MAX_DEPTH} levels")
    where = "/".join(path) or "the document"
    b = cur.copy(1, where)[0]
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return
    if b in _FIXED:
        cur.copy(_FIXED[b], where)
    elif 0xA0 <= b <= 0xBF:
        cur.copy(b & 0x1F, where)
    elif b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        width = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        n, _ = _length(cur, width, where)
        cur.copy(n, where)
    elif 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        n = b & 0x0F if b <= 0x8F else _length(cur, 2 if b == 0xDE else 4, where)[0]
        for _ in range(n):
            key = _key(cur, where)
            _node(cur, (*path, key), depth + 1, arrays, names)
    elif 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        n = b & 0x0F if b <= 0x9F else _length(cur, 2 if b == 0xDC else 4, where)[0]
        for i in range(n):
            _node(cur, (*path, str(i)), depth + 1, arrays, names)
    elif b in _FIXEXT or b in (0xC7, 0xC8, 0xC9):
        _ext(cur, b, path, arrays, names)
    else:
        raise _Bad(f"{where}: byte 0x{b:02x} is not a msgpack type")


def _key(cur: _Cursor, where: str) -> str:
    """A map key as a name component: a string, or an integer in decimal."""
    start = len(cur.skeleton)
    b = cur.copy(1, where)[0]
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
        n = b & 0x1F if b <= 0xBF else _length(cur, {0xD9: 1, 0xDA: 2, 0xDB: 4}[b], where)[0]
        try:
            return cur.copy(n, where).decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"{where}: a map key is not UTF-8") from None
    if b <= 0x7F or b >= 0xE0 or 0xCC <= b <= 0xD3:
        if b in _FIXED:
            cur.copy(_FIXED[b], where)
        value = msgpack.unpackb(bytes(cur.skeleton[start:]))
        return str(value)
    raise _Bad(f"{where}: a map key is neither a string nor an integer (type byte 0x{b:02x})")


def _ext(
    cur: _Cursor, b: int, path: tuple[str, ...], arrays: list[_Array], names: set[str]
) -> None:
    where = "/".join(path) or "the document"
    # The extension header (its type byte already copied) leaves the skeleton if it is an array.
    start = len(cur.skeleton) - 1
    if b in _FIXEXT:
        size = _FIXEXT[b]
    else:
        size = _length(cur, {0xC7: 1, 0xC8: 2, 0xC9: 4}[b], where)[0]
    code = cur.copy(1, where)[0]
    if code not in (_EXT_NDARRAY, _EXT_NPSCALAR):
        cur.copy(size, where)  # a complex number or a foreign extension: kept as it is
        return
    begin = cur.file.tell()
    dtype_name, shape, nbytes, inner = _array_header(cur, size, where)
    head = bytes(cur.skeleton[start:]) + inner
    del cur.skeleton[start:]
    if where in names:
        raise _Bad(f"parameter {where!r} appears twice")
    names.add(where)
    dtype = FLAX_DTYPES[dtype_name]
    arrays.append(_Array(where, len(cur.skeleton), head, dtype, shape, cur.file.tell()))
    cur.skeleton.append(_NIL)
    if len(inner) + nbytes != size:
        raise _Bad(f"parameter {where!r}: its array header does not match its extension size")
    if begin + size > cur.size:
        raise _Bad(f"truncated: parameter {where!r} needs {size} bytes past the end of the file")
    cur.file.seek(nbytes, io.SEEK_CUR)


def _array_header(cur: _Cursor, size: int, where: str) -> tuple[str, tuple[int, ...], int, bytes]:
    """Read `[shape, dtype name, bin header]` (not the data); returns its bytes too."""
    out = bytearray()

    def take(n: int) -> bytes:
        data = cur.take(n, where)
        out.extend(data)
        return data

    def uint() -> int:
        b = take(1)[0]
        if b <= 0x7F:
            return b
        if 0xCC <= b <= 0xCF:
            return int.from_bytes(take(_FIXED[b]), "big")
        raise _Bad(f"parameter {where!r}: a dimension is not a non-negative integer")

    if take(1)[0] != 0x93:
        raise _Bad(f"parameter {where!r}: the array extension is not [shape, dtype, data]")
    b = take(1)[0]
    if 0x90 <= b <= 0x9F:
        ndim = b & 0x0F
    elif b == 0xDC:
        ndim = int.from_bytes(take(2), "big")
    else:
        raise _Bad(f"parameter {where!r}: the array's shape is not a list")
    if ndim > MAX_NDIM:
        raise _Bad(f"parameter {where!r}: {ndim} dimensions (at most {MAX_NDIM})")
    shape = tuple(uint() for _ in range(ndim))
    b = take(1)[0]
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
    elif b in (0xD9, 0xC4):
        n = take(1)[0]
    else:
        raise _Bad(f"parameter {where!r}: the array's dtype is not a name")
    dtype_name = take(n).decode("ascii", "replace")
    if dtype_name not in FLAX_DTYPES:
        raise _Bad(f"parameter {where!r}: dtype {dtype_name!r} is not one git-theta stores")
    b = take(1)[0]
    if b not in (0xC4, 0xC5, 0xC6):
        raise _Bad(f"parameter {where!r}: the array's data is not a byte string")
    nbytes = int.from_bytes(take({0xC4: 1, 0xC5: 2, 0xC6: 4}[b]), "big")
    try:
        expected = checked_nbytes(FLAX_DTYPES[dtype_name], list(shape))
    except ValueError as exc:
        raise _Bad(f"parameter {where!r}: {exc}") from None
    if nbytes != expected or len(out) > size:
        raise _Bad(
            f"parameter {where!r}: {dtype_name} {list(shape)} needs {expected} bytes, "
            f"the array holds {nbytes}"
        )
    return dtype_name, shape, nbytes, bytes(out)


def _read_layout(file: BinaryIO, source: str) -> _Layout:
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    cur = _Cursor(file, size)
    try:
        arrays = _scan(cur)
    except _Bad as exc:
        raise CheckpointError(f"{source}: not a readable flax msgpack checkpoint: {exc}") from None
    return _Layout(bytes(cur.skeleton), arrays)


def _ext_header(size: int, code: int) -> bytes:
    """The extension header msgpack writes for a payload of `size` bytes."""
    for marker, n in _FIXEXT.items():
        if size == n:
            return bytes((marker, code))
    if size < 1 << 8:
        return bytes((0xC7, size, code))
    if size < 1 << 16:
        return b"\xc8" + struct.pack(">H", size) + bytes((code,))
    return b"\xc9" + struct.pack(">I", size) + bytes((code,))


def _head(spec: TensorSpec, *, where: str) -> bytes:
    """The headers flax writes before an array of `spec`'s bytes."""
    name = _NAMES_OF.get(spec.dtype)
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
    return _ext_header(len(inner) + nbytes, _EXT_NDARRAY) + inner


def _encode_layout(layout: _Layout) -> bytes:
    arrays = [[a.name, a.offset, a.head] for a in layout.arrays]
    return msgpack.packb({"version": LAYOUT_VERSION, "skeleton": layout.skeleton, "arrays": arrays})


def _decode_layout(raw: bytes, *, source: str) -> _Layout:
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
    arrays: list[_Array] = []
    last = -1
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and isinstance(entry[2], bytes)
            and last < entry[1] < len(skeleton)
            and skeleton[entry[1]] == _NIL
        ):
            raise malformed
        name, offset, head = entry
        last = offset
        arrays.append(_parse_head(name, offset, head, malformed))
    if len({a.name for a in arrays}) != len(arrays):
        raise malformed
    return _Layout(skeleton, arrays)


def _parse_head(name: str, offset: int, head: bytes, malformed: CheckpointError) -> _Array:
    """A stored array header, checked to describe exactly its array's bytes."""
    cur = _Cursor(io.BytesIO(head), len(head))
    try:
        b = cur.take(1, "head")[0]
        if b in _FIXEXT:
            size = _FIXEXT[b]
        elif b in (0xC7, 0xC8, 0xC9):
            size = _length(cur, {0xC7: 1, 0xC8: 2, 0xC9: 4}[b], "head", copy=False)[0]
        else:
            raise malformed
        if cur.take(1, "head")[0] not in (_EXT_NDARRAY, _EXT_NPSCALAR):
            raise malformed
        dtype_name, shape, nbytes, inner = _array_header(cur, size, name)
    except _Bad:
        raise malformed from None
    if cur.file.tell() != len(head) or len(inner) + nbytes != size:
        raise malformed
    return _Array(name, offset, head, FLAX_DTYPES[dtype_name], shape, -1)


def _fresh_layout(specs: Mapping[str, TensorSpec], *, source: str) -> _Layout:
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
    arrays: list[_Array] = []

    def emit(node: dict[str, Any]) -> None:
        skeleton.extend(_map_header(len(node)))
        for key, value in node.items():
            skeleton.extend(msgpack.packb(key))
            if isinstance(value, dict):
                emit(value)
                continue
            spec = specs[value]
            head = _head(spec, where=f"{source}: parameter {value!r}")
            arrays.append(_Array(value, len(skeleton), head, spec.dtype, tuple(spec.shape), -1))
            skeleton.append(_NIL)

    emit(tree)
    return _Layout(bytes(skeleton), arrays)


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
        prefix = file.read(_SNIFF_BYTES)
        cur = _Cursor(io.BytesIO(prefix), len(prefix))
        arrays: list[_Array] = []
        try:
            _node(cur, (), 0, arrays, set())
        except _Bad:
            return bool(arrays)
        return bool(arrays) and cur.file.tell() == len(prefix)

    def split(self, stream: BinaryIO, *, source: str, buffers: BufferPool | None = None) -> Split:
        layout = _read_layout(stream, source)

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
