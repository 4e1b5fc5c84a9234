"""Bounds on input from outside (a cloned repository, a checkpoint), checked before memory
or disk is spent on it: tensor shapes, JSON nesting, an object's declared size.

Each bound is far beyond anything real data needs; what it stops is a few bytes of hostile
input that would otherwise make us allocate terabytes, recurse until Python gives up, or
multiply huge integers for minutes.
"""

from __future__ import annotations

import re
from itertools import accumulate

from git_theta import settings
from git_theta.tensor import DTYPE_SIZES, PACKED_BITS

__all__ = [
    "DEFAULT_MAX_OBJECT_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_NDIM",
    "MAX_OBJECT_BYTES_KEY",
    "MAX_TENSOR_BYTES",
    "check_json_depth",
    "checked_nbytes",
    "has_lone_surrogate_escape",
    "parse_size",
]

# numpy's own maximum number of dimensions; safetensors and torch checkpoints never come near.
MAX_NDIM = 64
# 256 TiB: no machine holds such a tensor, and every size below it is exact in a float64.
MAX_TENSOR_BYTES = 1 << 48
# Metadata nests 6 levels, a safetensors header 3; Python's JSON decoder recurses once per
# level and fails near 1000 with RecursionError.
MAX_JSON_DEPTH = 64
# `git config theta.maxObjectBytes`: the largest raw tensor an object may declare. The default
# stays above the largest single tensors of public checkpoints (a 405B model's embedding in
# float32 optimizer state is ~8 GiB) by a wide margin.
MAX_OBJECT_BYTES_KEY = settings.MAX_OBJECT_BYTES.name
DEFAULT_MAX_OBJECT_BYTES = 64 << 30

_SIZE = re.compile(r"\s*([0-9]+)\s*([kmgt]?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """A byte count as git writes integers in its config (`512`, `64k`, `16m`, `2g`).

    Raises:
        ValueError: not a non-negative integer with an optional k/m/g/t suffix.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (a number, optionally with k, m, g or t)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def checked_nbytes(dtype: str, shape: object, *, limit: int = MAX_TENSOR_BYTES) -> int:
    """The raw size of a tensor of `dtype` and `shape`, after checking that `shape` is a list
    or tuple of at most MAX_NDIM non-negative integers (bools excluded) whose size stays
    within `limit`. The product is built dimension by dimension and stops at the bound, so a
    hostile shape never makes huge integers.

    Raises:
        ValueError: a malformed shape, an unknown dtype, packed elements that do not fill
            whole bytes, or a size above `limit`.
    """
    if not isinstance(shape, list | tuple):
        raise ValueError("shape must be a list of non-negative integers")
    if len(shape) > MAX_NDIM:
        raise ValueError(f"shape has {len(shape)} dimensions (at most {MAX_NDIM})")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ValueError("shape must be a list of non-negative integers")
    bits = PACKED_BITS.get(dtype)
    if bits is None:
        if dtype not in DTYPE_SIZES:
            raise ValueError(f"unknown dtype {dtype!r}")
        bits = 8 * DTYPE_SIZES[dtype]
    if 0 in shape:
        return 0
    bit_limit = 8 * limit
    total = bits
    for d in shape:
        total *= d
        if total > bit_limit:
            raise ValueError(f"{dtype} {list(shape)} is larger than {limit} bytes")
    if total % 8:
        numel = total // bits
        raise ValueError(f"{numel} {dtype} elements are {total} bits, not whole bytes")
    return total // 8


# A lone surrogate can only enter decoded JSON through a \uD800-\uDFFF escape (UTF-8 input
# cannot hold one); such text cannot be written back as UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def has_lone_surrogate_escape(raw: bytes) -> bool:
    """Whether JSON text may decode to a string holding a lone surrogate (cheap pre-check;
    callers confirm by encoding what they decoded)."""
    return _SURROGATE_ESCAPE.search(raw) is not None


_STRUCTURE = b'[]{}"'
_DELETE = bytes(b for b in range(256) if b not in _STRUCTURE)
_LEAVES = re.compile(rb"\[\]|\{\}")
_STRING = re.compile(rb'"[^"]*"')
_STEP = tuple({ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(b, 0) for b in range(256))
# Leaf containers are stripped this many times with a regex (fast while the rest shrinks, as it
# does for real documents); a document still not empty then is measured exactly in one pass.
_QUICK_PASSES = 8


def check_json_depth(raw: bytes, *, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON text nested deeper than `limit`, before a decoder recurses into it.

    Works on the bytes: escaped backslashes and quotes are dropped, then everything but
    brackets and quotes, then the strings; what remains is the bracket structure. Invalid
    JSON may pass (the decoder reports it), but nothing passes that nests deeper than
    `limit` outside strings.

    Raises:
        ValueError: the text nests deeper than `limit`.
    """
    if not raw:
        return
    text = bytes(raw)
    if b"\\" in text:  # rare in real headers and metadata: only then is the copy paid
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    # With everything else deleted, a string without brackets is `""`: those go at C speed,
    # and only strings holding brackets need the regex.
    brackets = text.translate(None, _DELETE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)
    passes = 0
    while brackets and passes < _QUICK_PASSES:
        brackets = _LEAVES.sub(b"", brackets)
        passes += 1
    depth = passes + (max(accumulate(map(_STEP.__getitem__, brackets))) if brackets else 0)
    if depth > limit:
        raise ValueError(f"JSON nested deeper than {limit} levels")
