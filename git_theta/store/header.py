"""An object's header: reading it from a stream and checking it against the payload
before any memory is spent (git_theta/store/serialize.py describes the format)."""

from __future__ import annotations

import hashlib
import io
from typing import Any, BinaryIO, NamedTuple

import msgpack

from git_theta.errors import CorruptObjectError, ObjectTooLargeError
from git_theta.limits import MAX_OBJECT_BYTES_KEY, checked_nbytes
from git_theta.store.planes import BLOCK_BYTES, LENGTH
from git_theta.tensor import storage_itemsize

OBJECT_VERSION = 1
# The version of an object with masked planes (`mplanes`): a reader that predates them refuses
# it as a header it does not know instead of decoding it wrong.
MASKED_VERSION = 2
# The msgpack header of any tensor we write is far smaller; a larger one is corruption.
MAX_HEADER_BYTES = 64 * 1024


class Reader:
    """Reads an object's bytes exactly, hashing them as they pass while `hashing` is on."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.hashing = True
        self.size = 0

    def read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise CorruptObjectError(f"object ends {n - len(data)} bytes early")
        if self.hashing:
            self.digest.update(data)
        self.size += n
        return data

    def read_into(self, view: memoryview) -> None:
        got = self._stream.readinto(view)  # type: ignore[attr-defined]
        if got != len(view):
            raise CorruptObjectError("object ends early")
        if self.hashing:
            self.digest.update(view)
        self.size += got

    def rest(self) -> None:
        tail = self._stream.read()
        if tail:
            raise CorruptObjectError(f"object has {len(tail)} bytes after its payload")


def read_stream_header(reader: Reader, stream: BinaryIO) -> dict[str, Any]:
    """The header at the stream's position, leaving the stream at the payload.

    Reads up to MAX_HEADER_BYTES in one call and seeks back to where the header ends (objects
    are read from files): feeding msgpack a byte at a time cost ~1 ms per object, 0.2 s of a
    checkout of 200 tensors.
    """
    head = stream.read(MAX_HEADER_BYTES)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_HEADER_BYTES)
    unpacker.feed(head)
    try:
        header = unpacker.unpack()
    except msgpack.OutOfData:
        if len(head) < MAX_HEADER_BYTES:
            raise CorruptObjectError(
                "object header is unreadable (the object ends inside it)"
            ) from None
        raise CorruptObjectError("object header is unreadable (too long)") from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise CorruptObjectError(f"object header is unreadable: {exc}") from None
    used = unpacker.tell()
    stream.seek(used - len(head), io.SEEK_CUR)
    reader.digest.update(head[:used])
    reader.size += used
    if not isinstance(header, dict) or header.get("v") not in (OBJECT_VERSION, MASKED_VERSION):
        version = header.get("v") if isinstance(header, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version > MASKED_VERSION:
            raise CorruptObjectError(
                f"object header is version {version}; this git-theta reads up to "
                f"{MASKED_VERSION} (a newer git-theta may be needed)"
            )
        raise CorruptObjectError(f"object header is not a git-theta v{OBJECT_VERSION} header")
    return header


class Planes(NamedTuple):
    """How a planes payload is cut: blocks of `block` bytes; in each, plane j is a zstd frame
    if j is in `zplanes`, masked (planes.masked_frames) if in `mplanes`, else raw."""

    block: int
    zplanes: frozenset[int]
    mplanes: frozenset[int]


class Layout(NamedTuple):
    """What a checked header says about the tensor and how its payload is laid out."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    itemsize: int
    expected: str | None  # the content hash the header carries, if any
    planes: Planes | None  # None for raw


def check_header(header: dict[str, Any], payload: int, max_bytes: int) -> Layout:
    """The layout `header` declares, once it agrees with a `payload` of that many bytes and
    `max_bytes` (see `read_object`)."""
    try:
        dtype = header["dtype"]
        if not isinstance(dtype, str):
            raise TypeError(f"dtype is {dtype!r}")
        shape = header["shape"]
        wanted = checked_nbytes(dtype, shape)
        shape = tuple(shape)
        nbytes = header["nbytes"]
        codec = header["codec"]
        itemsize = storage_itemsize(dtype)
        expected = header.get("hash")
        if expected is not None and not isinstance(expected, str):
            raise TypeError(f"hash is {expected!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptObjectError(f"object header lacks a valid field: {exc}") from None
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or wanted != nbytes:
        raise CorruptObjectError(f"object header says {nbytes!r} bytes for {dtype} {list(shape)}")
    planes = _plane_layout(header, itemsize) if codec == "planes" else None
    if codec not in ("raw", "planes"):
        raise CorruptObjectError(f"object uses unknown codec {codec!r}")
    if planes is None and header.get("v") != OBJECT_VERSION:
        raise CorruptObjectError(f"object header version {header.get('v')} with codec {codec!r}")
    if planes is None and payload != nbytes:
        raise CorruptObjectError(
            f"object header declares {nbytes} raw bytes; its payload has {payload}"
        )
    if planes is not None and payload < min_payload(nbytes, itemsize, planes):
        raise CorruptObjectError(
            f"object header declares {nbytes} bytes, more than its {payload}-byte payload can hold"
        )
    if nbytes > max_bytes:
        raise ObjectTooLargeError(
            f"declares a tensor of {nbytes} bytes ({dtype} {list(shape)}), above "
            f"{MAX_OBJECT_BYTES_KEY} ({max_bytes}); if the tensor is genuine, raise it with "
            f"`git config {MAX_OBJECT_BYTES_KEY} <bytes>`"
        )
    return Layout(dtype, shape, nbytes, itemsize, expected, planes)


def _plane_layout(header: dict[str, Any], itemsize: int) -> Planes:
    """The `block`, `zplanes` and `mplanes` of a planes header, checked: blocks are what the
    encoder writes (at most BLOCK_BYTES, whole elements), planes lie within an element, a
    plane is coded one way, and masked planes come with their version and multi-byte
    elements."""
    block, zplanes = header.get("block"), header.get("zplanes")
    mplanes = header.get("mplanes", [])
    if (
        isinstance(block, bool)
        or not isinstance(block, int)
        or not 0 < block <= BLOCK_BYTES
        or block % itemsize
    ):
        raise CorruptObjectError(f"object block size {block!r} does not fit its dtype")
    if not isinstance(zplanes, list) or not all(
        isinstance(j, int) and not isinstance(j, bool) and 0 <= j < itemsize for j in zplanes
    ):
        raise CorruptObjectError(f"object zplanes {zplanes!r} do not fit its dtype")
    if (
        not isinstance(mplanes, list)
        or not all(
            isinstance(j, int) and not isinstance(j, bool) and 0 <= j < itemsize for j in mplanes
        )
        or set(mplanes) & set(zplanes)
        or (mplanes and itemsize < 2)
        or (header.get("v") == MASKED_VERSION) != bool(mplanes)
    ):
        raise CorruptObjectError(f"object mplanes {mplanes!r} do not fit its dtype or version")
    return Planes(block, frozenset(zplanes), frozenset(mplanes))


# The smallest zstd frame (RFC 8878): a 4-byte magic number, a 1-byte frame header descriptor
# and at least one byte of window descriptor or content size; then blocks of at most 128 KiB
# of content, each at least a 3-byte block header and one byte (an RLE block). No valid frame
# of n bytes is shorter than _ZSTD_MIN_FRAME + _ZSTD_MIN_BLOCK * ceil(n / _ZSTD_MAX_BLOCK).
_ZSTD_MIN_FRAME = 6
_ZSTD_MIN_BLOCK = 4
_ZSTD_MAX_BLOCK = 128 * 1024


def min_payload(nbytes: int, itemsize: int, planes: Planes) -> int:
    """The fewest payload bytes that can decode to `nbytes` in this layout: raw planes in
    full, each compressed plane as its length and the smallest zstd frame of its size, each
    masked plane as that of its bitmap and the two lengths and smallest frames (its values
    may be none)."""

    def frame(size: int) -> int:
        return LENGTH.size + _ZSTD_MIN_FRAME + _ZSTD_MIN_BLOCK * -(-size // _ZSTD_MAX_BLOCK)

    def per_block(size: int) -> int:
        plane = size // itemsize
        return sum(
            frame(plane)
            if j in planes.zplanes
            else frame(-(-plane // 8)) + frame(0)
            if j in planes.mplanes
            else plane
            for j in range(itemsize)
        )

    full, last = divmod(nbytes, planes.block)
    return full * per_block(planes.block) + (per_block(last) if last else 0)
