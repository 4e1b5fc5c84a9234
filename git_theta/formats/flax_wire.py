"""The msgpack wire format of flax checkpoints, walked by our own bounded reader (formats/flax.py
has the format and its layout). The walk copies every byte outside the arrays into the layout's
skeleton and leaves a nil where each array was; nesting depth, shapes and sizes are checked
against the file's size before anything is allocated.
Spec: https://github.com/msgpack/msgpack/blob/master/spec.md and flax/serialization.py.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO, NamedTuple

import msgpack

from git_theta.errors import CheckpointError
from git_theta.limits import MAX_JSON_DEPTH, MAX_NDIM, checked_nbytes

__all__ = [
    "Array",
    "Bad",
    "Cursor",
    "EXT_NDARRAY",
    "EXT_NPSCALAR",
    "FIXED",
    "FIXEXT",
    "FLAX_DTYPES",
    "LEN_WIDTH",
    "Layout",
    "MAX_DEPTH",
    "MAX_LAYOUT_BYTES",
    "NAMES_OF",
    "NIL",
    "SNIFF_BYTES",
    "array_header",
    "ext",
    "read_key",
    "length",
    "node",
    "read_layout",
    "scan",
]

# flax's extension type codes (flax.serialization._MsgpackExtType).
EXT_NDARRAY = 1
EXT_NPSCALAR = 3
NIL = 0xC0
# State dicts nest a handful of levels (params/encoder/layer_0/attention/query/kernel).
MAX_DEPTH = MAX_JSON_DEPTH
# A non-array leaf (a string, a bytes blob) is copied into the layout; like a safetensors
# header, the layout is refused past this size.
MAX_LAYOUT_BYTES = 100_000_000
# The first bytes looked at when sniffing: enough to reach the first array of any real file.
SNIFF_BYTES = 1 << 20

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
NAMES_OF = {ours: theirs for theirs, ours in FLAX_DTYPES.items()}

# Fixed-width scalar types: type byte -> payload bytes (float32/64, uint8-64, int8-64).
FIXED = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
LEN_WIDTH = {1: ">B", 2: ">H", 4: ">I"}


class Array(NamedTuple):
    """One array of the file: where its placeholder sits in the skeleton and its headers."""

    name: str
    offset: int  # of the nil in the skeleton
    head: bytes  # extension header + type code + array header up to the data
    dtype: str
    shape: tuple[int, ...]
    data_at: int  # where its bytes start in the file (-1 for a stored layout)


class Layout(NamedTuple):
    skeleton: bytes
    arrays: list[Array]


class Bad(Exception):
    """The walk found something that is not a flax msgpack file; the message says what."""


class Cursor:
    """Reads a seekable file front to back, copying what it reads into the skeleton."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.size = file, size
        self.skeleton = bytearray()

    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.file.tell():
            raise Bad(f"truncated: {what} needs {n} bytes past the end of the file")
        data = self.file.read(n)
        if len(data) != n:
            raise Bad(f"truncated: {what} needs {n} bytes, the file ends early")
        return data

    def copy(self, n: int, what: str) -> bytes:
        data = self.take(n, what)
        self.skeleton += data
        if len(self.skeleton) > MAX_LAYOUT_BYTES:
            raise Bad(f"more than {MAX_LAYOUT_BYTES} bytes outside arrays")
        return data


def length(cur: Cursor, width: int, what: str, *, copy: bool = True) -> tuple[int, bytes]:
    raw = cur.copy(width, what) if copy else cur.take(width, what)
    return struct.unpack(LEN_WIDTH[width], raw)[0], raw


def scan(cur: Cursor) -> list[Array]:
    """Walk the whole document, filling `cur.skeleton` and returning its arrays."""
    arrays: list[Array] = []
    first = cur.take(1, "the document")[0]
    if not (0x80 <= first <= 0x8F or first in (0xDE, 0xDF)):
        raise Bad("the document is not a msgpack map (a flax state dict)")
    cur.file.seek(-1, io.SEEK_CUR)
    node(cur, (), 0, arrays, set())
    if cur.file.tell() != cur.size:
        raise Bad(f"{cur.size - cur.file.tell()} bytes follow the msgpack document")
    return arrays


def node(
    cur: Cursor, path: tuple[str, ...], depth: int, arrays: list[Array], names: set[str]
) -> None:
    if depth > MAX_DEPTH:
        raise Bad(f"nested deeper than {MAX_DEPTH} levels")
    where = "/".join(path) or "the document"
    b = cur.copy(1, where)[0]
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return
    if b in FIXED:
        cur.copy(FIXED[b], where)
    elif 0xA0 <= b <= 0xBF:
        cur.copy(b & 0x1F, where)
    elif b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        width = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        n, _ = length(cur, width, where)
        cur.copy(n, where)
    elif 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        n = b & 0x0F if b <= 0x8F else length(cur, 2 if b == 0xDE else 4, where)[0]
        for _ in range(n):
            key = read_key(cur, where)
            node(cur, (*path, key), depth + 1, arrays, names)
    elif 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        n = b & 0x0F if b <= 0x9F else length(cur, 2 if b == 0xDC else 4, where)[0]
        for i in range(n):
            node(cur, (*path, str(i)), depth + 1, arrays, names)
    elif b in FIXEXT or b in (0xC7, 0xC8, 0xC9):
        ext(cur, b, path, arrays, names)
    else:
        raise Bad(f"{where}: byte 0x{b:02x} is not a msgpack type")


def read_key(cur: Cursor, where: str) -> str:
    """A map key as a name component: a string, or an integer in decimal."""
    start = len(cur.skeleton)
    b = cur.copy(1, where)[0]
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
        n = b & 0x1F if b <= 0xBF else length(cur, {0xD9: 1, 0xDA: 2, 0xDB: 4}[b], where)[0]
        try:
            return cur.copy(n, where).decode("utf-8")
        except UnicodeDecodeError:
            raise Bad(f"{where}: a map key is not UTF-8") from None
    if b <= 0x7F or b >= 0xE0 or 0xCC <= b <= 0xD3:
        if b in FIXED:
            cur.copy(FIXED[b], where)
        value = msgpack.unpackb(bytes(cur.skeleton[start:]))
        return str(value)
    raise Bad(f"{where}: a map key is neither a string nor an integer (type byte 0x{b:02x})")


def ext(cur: Cursor, b: int, path: tuple[str, ...], arrays: list[Array], names: set[str]) -> None:
    where = "/".join(path) or "the document"
    # The extension header (its type byte already copied) leaves the skeleton if it is an array.
    start = len(cur.skeleton) - 1
    if b in FIXEXT:
        size = FIXEXT[b]
    else:
        size = length(cur, {0xC7: 1, 0xC8: 2, 0xC9: 4}[b], where)[0]
    code = cur.copy(1, where)[0]
    if code not in (EXT_NDARRAY, EXT_NPSCALAR):
        cur.copy(size, where)  # a complex number or a foreign extension: kept as it is
        return
    begin = cur.file.tell()
    dtype_name, shape, nbytes, inner = array_header(cur, size, where)
    head = bytes(cur.skeleton[start:]) + inner
    del cur.skeleton[start:]
    if where in names:
        raise Bad(f"parameter {where!r} appears twice")
    names.add(where)
    dtype = FLAX_DTYPES[dtype_name]
    arrays.append(Array(where, len(cur.skeleton), head, dtype, shape, cur.file.tell()))
    cur.skeleton.append(NIL)
    if len(inner) + nbytes != size:
        raise Bad(f"parameter {where!r}: its array header does not match its extension size")
    if begin + size > cur.size:
        raise Bad(f"truncated: parameter {where!r} needs {size} bytes past the end of the file")
    cur.file.seek(nbytes, io.SEEK_CUR)


def array_header(cur: Cursor, size: int, where: str) -> tuple[str, tuple[int, ...], int, bytes]:
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
            return int.from_bytes(take(FIXED[b]), "big")
        raise Bad(f"parameter {where!r}: a dimension is not a non-negative integer")

    if take(1)[0] != 0x93:
        raise Bad(f"parameter {where!r}: the array extension is not [shape, dtype, data]")
    b = take(1)[0]
    if 0x90 <= b <= 0x9F:
        ndim = b & 0x0F
    elif b == 0xDC:
        ndim = int.from_bytes(take(2), "big")
    else:
        raise Bad(f"parameter {where!r}: the array's shape is not a list")
    if ndim > MAX_NDIM:
        raise Bad(f"parameter {where!r}: {ndim} dimensions (at most {MAX_NDIM})")
    shape = tuple(uint() for _ in range(ndim))
    b = take(1)[0]
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
    elif b in (0xD9, 0xC4):
        n = take(1)[0]
    else:
        raise Bad(f"parameter {where!r}: the array's dtype is not a name")
    dtype_name = take(n).decode("ascii", "replace")
    if dtype_name not in FLAX_DTYPES:
        raise Bad(f"parameter {where!r}: dtype {dtype_name!r} is not one git-theta stores")
    b = take(1)[0]
    if b not in (0xC4, 0xC5, 0xC6):
        raise Bad(f"parameter {where!r}: the array's data is not a byte string")
    nbytes = int.from_bytes(take({0xC4: 1, 0xC5: 2, 0xC6: 4}[b]), "big")
    try:
        expected = checked_nbytes(FLAX_DTYPES[dtype_name], list(shape))
    except ValueError as exc:
        raise Bad(f"parameter {where!r}: {exc}") from None
    if nbytes != expected or len(out) > size:
        raise Bad(
            f"parameter {where!r}: {dtype_name} {list(shape)} needs {expected} bytes, "
            f"the array holds {nbytes}"
        )
    return dtype_name, shape, nbytes, bytes(out)


def read_layout(file: BinaryIO, source: str) -> Layout:
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    cur = Cursor(file, size)
    try:
        arrays = scan(cur)
    except Bad as exc:
        raise CheckpointError(f"{source}: not a readable flax msgpack checkpoint: {exc}") from None
    return Layout(bytes(cur.skeleton), arrays)
