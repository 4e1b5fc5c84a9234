"""The header of a `.npy` array, read strictly and within bounds, and the bytes numpy writes.

numpy's own reader evaluates the header with `ast.literal_eval` (and `tokenize` for headers
Python 2 wrote), which a hostile header can drive into deep recursion or a tokenizer error;
its shape is allocated before the data is seen. This reader accepts the dictionary numpy
writes (`descr` a plain numeric dtype string, `fortran_order`, `shape` a tuple of integers),
in any key order and spacing, and nothing else. Spec:
https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
"""

from __future__ import annotations

import io
import re
import sys
from typing import NamedTuple

from git_theta.limits import checked_nbytes

__all__ = [
    "MAGIC",
    "NpyError",
    "NpyHeader",
    "canonical_preamble",
    "parse_preamble",
    "split_preamble",
]

MAGIC = b"\x93NUMPY"
# numpy's reader refuses headers above 10000 bytes unless told otherwise; ours are far smaller.
MAX_HEADER_BYTES = 64 * 1024
# (byte-order-free kind and size) -> safetensors dtype name
_DTYPES = {
    "b1": "BOOL",
    "u1": "U8",
    "i1": "I8",
    "u2": "U16",
    "i2": "I16",
    "f2": "F16",
    "u4": "U32",
    "i4": "I32",
    "f4": "F32",
    "u8": "U64",
    "i8": "I64",
    "f8": "F64",
    "c8": "C64",
}
_NATIVE = "<" if sys.byteorder == "little" else ">"
_DESCR = re.compile(r"([<>|=]?)([a-zA-Z]\d*)")
_ITEM = re.compile(
    r"\s*'(descr|fortran_order|shape)'\s*:\s*"
    r"('[^'\\]*'|True|False|\(\s*(?:\d+L?\s*,\s*)*(?:\d+L?\s*)?\))\s*(,|$)"
)


class NpyError(ValueError):
    """A `.npy` header git-theta does not read; the message says why, in one line."""


class NpyHeader(NamedTuple):
    """What a `.npy` header says, and its bytes.

    Attributes:
        preamble: the bytes before the data (magic, version, length, dictionary, padding).
        descr: numpy's dtype string as written (`<i4`, `>f8`, `|b1`).
        dtype: the safetensors dtype name of those elements.
        big_endian: the data bytes are big-endian.
        fortran: the data is in column-major order.
        shape: the dimensions.
        nbytes: the size of the data that follows.
    """

    preamble: bytes
    descr: str
    dtype: str
    big_endian: bool
    fortran: bool
    shape: tuple[int, ...]
    nbytes: int


def split_preamble(head: bytes) -> tuple[int, int]:
    """(where the dictionary starts, where the data starts) for a `.npy` file beginning with
    `head` (at least 12 bytes).

    Raises:
        NpyError: not a `.npy` file, an unknown version, or a header above the bound.
    """
    if not head.startswith(MAGIC) or len(head) < 10:
        raise NpyError("not a .npy array (no NUMPY magic)")
    major, minor = head[6], head[7]
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise NpyError(f".npy format version {major}.{minor} is not one numpy writes")
    if major == 1:
        start, length = 10, int.from_bytes(head[8:10], "little")
    else:
        if len(head) < 12:
            raise NpyError(".npy header is truncated")
        start, length = 12, int.from_bytes(head[8:12], "little")
    if length > MAX_HEADER_BYTES:
        raise NpyError(f".npy header of {length} bytes (at most {MAX_HEADER_BYTES})")
    return start, start + length


def parse_preamble(preamble: bytes) -> NpyHeader:
    """The header in `preamble` (the complete bytes before the data).

    Raises:
        NpyError: a header git-theta does not read (structured or object dtypes included),
            or one whose shape is malformed or out of bounds.
    """
    start, end = split_preamble(preamble)
    if len(preamble) != end:
        raise NpyError(".npy header is truncated")
    encoding = "utf-8" if preamble[6] == 3 else "latin-1"
    try:
        text = preamble[start:end].decode(encoding)
    except UnicodeDecodeError:
        raise NpyError(".npy header is not valid text") from None
    fields = _fields(text)
    descr = fields["descr"][1:-1]
    match = _DESCR.fullmatch(descr)
    if match is None or match.group(2) not in _DTYPES:
        kind = "Python objects" if descr.endswith("O") else f"dtype {descr!r}"
        raise NpyError(f"unsupported dtype: {kind}")
    order = _NATIVE if match.group(1) in ("", "=") else match.group(1)
    if fields["fortran_order"] not in ("True", "False"):
        raise NpyError(".npy header's fortran_order is not True or False")
    shape_text = fields["shape"]
    if not shape_text.startswith("("):
        raise NpyError(".npy header's shape is not a tuple")
    try:
        shape = tuple(int(d.strip().rstrip("L")) for d in shape_text[1:-1].split(",") if d.strip())
        dtype = _DTYPES[match.group(2)]
        nbytes = checked_nbytes(dtype, shape)
    except ValueError as exc:
        raise NpyError(f".npy header's shape {shape_text[:60]}: {exc}") from None
    return NpyHeader(
        preamble, descr, dtype, order == ">", fields["fortran_order"] == "True", shape, nbytes
    )


def _fields(text: str) -> dict[str, str]:
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise NpyError(".npy header is not a dictionary")
    body = body[1:-1]
    fields: dict[str, str] = {}
    position = 0
    while position < len(body) and body[position:].strip():
        match = _ITEM.match(body, position)
        if match is None:
            if "'descr'" in body and re.search(r"'descr'\s*:\s*\[", body):
                raise NpyError("unsupported dtype: a structured dtype")
            raise NpyError(".npy header is not one numpy writes for a plain array")
        key, value = match.group(1), match.group(2)
        if key in fields:
            raise NpyError(f".npy header names {key!r} twice")
        fields[key] = value
        position = match.end()
    missing = {"descr", "fortran_order", "shape"} - fields.keys()
    if missing:
        raise NpyError(f".npy header lacks {', '.join(sorted(missing))}")
    return fields


class _HeaderOnly(io.RawIOBase):
    """A sink that keeps the first write (numpy writes the whole header at once) and stops
    the writer there, so no array data is ever produced."""

    def __init__(self) -> None:
        self.first: bytes | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.first = bytes(data)
        raise _Stop


class _Stop(Exception):
    pass


def canonical_preamble(descr: str, shape: tuple[int, ...]) -> bytes:
    """The header numpy's writer gives a C-order array of `descr` and `shape`, as numpy itself
    makes it (asked of numpy, so it follows whichever numpy is installed). Allocates nothing:
    the array handed to numpy is a zero-stride view of one element."""
    import numpy as np

    one = np.zeros(1, dtype=np.dtype(descr))
    view = np.lib.stride_tricks.as_strided(one, shape=shape, strides=(0,) * len(shape))
    sink = _HeaderOnly()
    try:
        np.lib.format.write_array(sink, view, allow_pickle=False)
    except _Stop:
        pass
    if sink.first is None:  # numpy wrote nothing: cannot happen for a header
        raise NpyError("numpy wrote no .npy header")
    return sink.first
