"""Hypothesis strategies that damage inputs the way a corrupt disk or an attacker would:
byte-level mutations of any file, hostile JSON values, names and object ids, and safetensors
files built with a damaged header. Everything draws through Hypothesis, so a failing case
shrinks to a small one and replays from the seed.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from testing.checkpoints import ALL_DTYPES, random_array

__all__ = [
    "Blob",
    "HostileRef",
    "DEEP",
    "HUGE",
    "deep_json",
    "dump_json",
    "hostile_ints",
    "hostile_json",
    "hostile_names",
    "hostile_oids",
    "mutated",
    "resolve_oid",
    "SENTINEL",
    "SENTINEL_RELATIVE",
    "safetensors_files",
    "tensor_specs",
    "valid_safetensors",
]


class HostileRef(NamedTuple):
    """An object reference as hostile metadata may hold it: any string as the oid, unchecked
    (git_theta's ObjectRef refuses to exist with such an oid)."""

    oid: str
    size: int


# Integers that break careless arithmetic: signs, 32/64-bit edges, float-exact edges, bigger
# than any machine word, and more digits than Python's int parser takes (4300).
INTERESTING_INTS = [
    -1,
    0,
    1,
    255,
    2**31 - 1,
    2**31,
    2**32,
    2**40,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    10**30,
]

hostile_ints = st.one_of(st.sampled_from(INTERESTING_INTS), st.integers(-(2**70), 2**70))

# Strings a name, dtype or oid could be: empty, lone surrogates (not encodable as UTF-8),
# NUL, control characters, path traversal, very long.
_HOSTILE_TEXT = [
    "",
    "\ud800",
    "a\udfffb",
    "a\x00b",
    "a\nb",
    "../../etc/passwd",
    "/etc/passwd",
    "é",
    "\U0001f600",
    "__metadata__",
    "x" * 5000,
]
hostile_names = st.one_of(st.sampled_from(_HOSTILE_TEXT), st.text(max_size=8))

# Marks where `dump_json` splices in nesting deeper than any Python recursion limit, and an
# integer of more digits than Python's int parser takes (4300), which no dict can hold.
DEEP = "\x00DEEP\x00"
HUGE = "\x00HUGE\x00"
HUGE_DIGITS = "9" * 5000


def deep_json(depth: int) -> str:
    """A JSON array nested `depth` deep."""
    return "[" * depth + "]" * depth


_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    hostile_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_names,
    st.just(DEEP),
    st.just(HUGE),
)
hostile_json = st.recursive(
    _json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(hostile_names, children, max_size=3)
    ),
    max_leaves=6,
)


# Stand-ins for paths known only when a test runs, replaced by `resolve_oid`.
SENTINEL = "<sentinel>"
SENTINEL_RELATIVE = "<sentinel-relative>"


class Blob(bytes):
    """Bytes whose repr stays short (the head and tail of a 200 kB header are what a report
    needs); Hypothesis prints it for a falsifying example."""

    SHOWN = 4000  # a metadata file's damage can be anywhere in it: show all of a small one
    HEAD = 300
    TAIL = 100

    def __repr__(self) -> str:
        if len(self) <= self.SHOWN:
            return repr(bytes(self))
        head, tail = bytes(self[: self.HEAD]), bytes(self[-self.TAIL :])
        return f"{head!r} + <{len(self) - self.HEAD - self.TAIL} bytes> + {tail!r}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def hostile_oids() -> st.SearchStrategy[str]:
    """Object ids that are paths (to a sentinel file outside the repository, to system
    files, to git's own stdin), or hex that is not quite 64 lowercase digits."""
    hex64 = "ab" * 32
    return st.one_of(
        st.sampled_from(
            [
                SENTINEL,
                SENTINEL_RELATIVE,
                "/etc/passwd",
                "/dev/stdin",
                "/dev/zero",
                "../x",
                "../../../../../../etc/passwd",
                hex64 + "\n",
                hex64.upper(),
                hex64[:-1],
                hex64 + "0",
                "",
                "\ud800" * 64,
            ]
        ),
        st.text(max_size=70),
    )


def resolve_oid(oid: str, sentinel: str) -> str:
    """`oid` with the stand-ins replaced: the sentinel's absolute path, or a relative one
    that climbs out of the store (the store joins `oid[:2]/oid[2:4]/oid`, and `/.` there
    restarts the path at the root)."""
    if oid == SENTINEL:
        return sentinel
    if oid == SENTINEL_RELATIVE:
        return "../" * 24 + sentinel.lstrip("/")
    return oid


def dump_json(value: Any, *, ascii_only: bool, depth: int) -> bytes:
    """`value` as JSON bytes; DEEP marks become arrays `depth` deep."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    text = text.replace(json.dumps(DEEP, ensure_ascii=ascii_only), deep_json(depth))
    text = text.replace(json.dumps(HUGE, ensure_ascii=ascii_only), HUGE_DIGITS)
    # Lone surrogates become the invalid UTF-8 a careless writer would produce.
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, base: bytes, *, max_ops: int = 4) -> Blob:
    """`base` with 1..max_ops byte-level edits: bit flips, interesting bytes and 64-bit
    words written over it, truncation, insertion, deletion, duplication of a range."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(sorted(_BYTE_OPS)))
        data = _BYTE_OPS[op](draw, data)
    return Blob(data)


def _pos(draw: st.DrawFn, data: bytearray, *, end: bool = False) -> int:
    return draw(st.integers(0, len(data) if end else max(len(data) - 1, 0)))


def _flip(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        data[_pos(draw, data)] ^= 1 << draw(st.integers(0, 7))
    return data


def _byte(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        data[_pos(draw, data)] = value
    return data


def _word(draw: st.DrawFn, data: bytearray) -> bytearray:
    value = draw(st.sampled_from([v for v in INTERESTING_INTS if 0 <= v < 2**64]))
    at = _pos(draw, data)
    data[at : at + 8] = struct.pack("<Q", value)
    return data


def _truncate(draw: st.DrawFn, data: bytearray) -> bytearray:
    return data[: _pos(draw, data, end=True)]


def _insert(draw: st.DrawFn, data: bytearray) -> bytearray:
    at = _pos(draw, data, end=True)
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


def _delete(draw: st.DrawFn, data: bytearray) -> bytearray:
    at = _pos(draw, data)
    return data[:at] + data[at + draw(st.integers(1, 64)) :]


def _duplicate(draw: st.DrawFn, data: bytearray) -> bytearray:
    at = _pos(draw, data)
    chunk = data[at : at + draw(st.integers(1, 64))]
    to = _pos(draw, data, end=True)
    return data[:to] + chunk + data[to:]


_BYTE_OPS: dict[str, Callable[[st.DrawFn, bytearray], bytearray]] = {
    "flip": _flip,
    "byte": _byte,
    "word": _word,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "duplicate": _duplicate,
}

# ---- safetensors ---------------------------------------------------------------------------

_ST_DTYPES = sorted(ALL_DTYPES)
tensor_specs = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.tuples(
        st.sampled_from(_ST_DTYPES),
        st.lists(st.integers(0, 5), max_size=3).map(tuple),
    ),
    min_size=0,
    max_size=4,
)


def _build(params: dict[str, tuple[str, np.ndarray]]) -> tuple[dict[str, Any], bytes]:
    header: dict[str, Any] = {}
    offset = 0
    blobs = []
    for name, (dtype, array) in params.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    return header, b"".join(blobs)


def _frame(header_bytes: bytes, data: bytes) -> bytes:
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


@st.composite
def valid_safetensors(draw: st.DrawFn) -> bytes:
    """A small, well-formed safetensors file of random tensors (every dtype git-theta reads)."""
    specs = draw(tensor_specs)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = {n: (d, random_array(d, shape, rng)) for n, (d, shape) in specs.items()}
    header, data = _build(params)
    if draw(st.booleans()):
        header = {"__metadata__": {"format": "pt"}, **header}
    return Blob(_frame(json.dumps(header).encode(), data))


_FIELDS = ["dtype", "shape", "data_offsets"]
_SPECIAL = {"deep": DEEP, "huge": HUGE, "surrogate": None}
_HEADER_OPS = ["field", "rename", "drop", "extra", "meta", "copy", "swap", *_SPECIAL]


@st.composite
def _mutated_header(draw: st.DrawFn, header: dict[str, Any]) -> dict[str, Any]:
    header = json.loads(json.dumps(header))
    names = [n for n in header if n != "__metadata__"]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(_HEADER_OPS))
        if op in _SPECIAL:  # the known killers, drawn often enough to matter in 30 cases
            target = draw(st.sampled_from(names)) if names else "__metadata__"
            if op == "surrogate":
                if target in header:
                    header[draw(st.sampled_from(["\ud800", "a\udfffb"]))] = header.pop(target)
            elif isinstance(header.get(target), dict):
                header[target][draw(st.sampled_from(_FIELDS))] = _SPECIAL[op]
            else:
                header[target] = _SPECIAL[op]
            names = [n for n in header if n != "__metadata__"]
            continue
        if op == "meta":
            header["__metadata__"] = draw(hostile_json)
            continue
        if not names:
            header[draw(hostile_names)] = draw(hostile_json)
            continue
        name = draw(st.sampled_from(names))
        entry = header[name]
        if op == "field" and isinstance(entry, dict):
            entry[draw(st.sampled_from(_FIELDS))] = draw(hostile_json)
        elif op == "rename":
            new = draw(hostile_names)
            header[new] = header.pop(name)
            names = [n for n in header if n != "__metadata__"]
        elif op == "drop" and isinstance(entry, dict) and entry:
            entry.pop(draw(st.sampled_from(sorted(entry))))
        elif op == "extra" and isinstance(entry, dict):
            entry[draw(hostile_names)] = draw(hostile_json)
        elif op == "copy":
            header[draw(hostile_names)] = json.loads(json.dumps(entry))
            names = [n for n in header if n != "__metadata__"]
        elif op == "swap" and len(names) > 1:
            other = draw(st.sampled_from(names))
            a, b = header[name], header[other]
            if isinstance(a, dict) and isinstance(b, dict):
                a["data_offsets"], b["data_offsets"] = (
                    b.get("data_offsets"),
                    a.get("data_offsets"),
                )
    return header


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """A safetensors file, possibly damaged: a valid one, one whose header JSON was mutated
    (hostile field values, names, nesting, encoding, a lying length prefix), or one with
    byte-level damage anywhere."""
    specs = draw(tensor_specs)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = {n: (d, random_array(d, shape, rng)) for n, (d, shape) in specs.items()}
    header, data = _build(params)
    kind = draw(st.sampled_from(["header", "header", "valid", "bytes", "both"]))
    if kind in ("header", "both"):
        header = draw(_mutated_header(header))
    depth = draw(st.sampled_from([100_000, 1000, 2]))
    raw = dump_json(header, ascii_only=draw(st.sampled_from([True, True, False])), depth=depth)
    if kind in ("header", "both") and draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]))
            + raw[at:]
        )
    content = _frame(raw, data)
    if kind in ("header", "both") and draw(st.booleans()):
        prefix = draw(st.sampled_from([0, 1, 2, 7, 2**31, 100_000_001, 2**64 - 1]))
        content = struct.pack("<Q", prefix) + content[8:]
    if kind in ("bytes", "both"):
        content = draw(mutated(content))
    return Blob(content)
