"""Checking objects on disk, and moving bad ones aside (fsck, fetch, smudge).

Two depths:

- `check_bytes`: the size and the sha256 of the file against the oid. The oid is the sha256 of
  the object's bytes, so this proves the bytes are the ones that were committed: what `git theta
  fetch` runs on the objects it finds present before trusting them.
- `check_object`: what `git theta fsck` runs. By default the same sha256 (any changed bit shows),
  the header parsed, and for a dense entry the content hash the header records compared with
  the one the metadata records, all in one read at the speed of the hash. With `decode`, the
  object is also decoded in that read and the tensor checked against its header's hash (what
  a checkout verifies), which finds an object that was written wrong, not only damaged later.

A bad object is moved aside to `<store root>/bad/<oid>` (as Git LFS keeps `.git/lfs/bad`), never
deleted: it is evidence, and the name is free for a verified download to take its place.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from io import BufferedReader
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from git_theta.errors import CorruptObjectError
from git_theta.metadata import ObjectRef
from git_theta.store.objects import ObjectStore
from git_theta.store.pack import is_pack, member_offsets
from git_theta.store.serialize import MAX_HEADER_BYTES, read_header, read_object
from git_theta.tensor import BufferPool

__all__ = [
    "BAD_DIRNAME",
    "check_bytes",
    "check_object",
    "move_aside",
    "parallel",
    "workers",
]

BAD_DIRNAME = "bad"
READ_BYTES = 1 << 20
_local = threading.local()
T = TypeVar("T")
R = TypeVar("R")


def workers() -> int:
    """Threads for checking: one per core (sha256, zstd and xxhash release the GIL)."""
    return max(1, min(32, os.cpu_count() or 1))


def parallel(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """`map(fn, items)` over `workers()` threads, results in order."""
    with ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="verify") as pool:
        yield from pool.map(fn, items)


def check_bytes(store: ObjectStore, ref: ObjectRef) -> str | None:
    """None if the object is present with the size and sha256 its oid says; else "missing" or
    why it is corrupt."""
    try:
        f = store.path(ref.oid).open("rb")
    except FileNotFoundError:
        return "missing"
    with f:
        size = os.fstat(f.fileno()).st_size
        if size != ref.size:
            return f"corrupt (its size is {size} bytes, not {ref.size})"
        digest = _sha256(f)
    return None if digest == ref.oid else "corrupt (its bytes do not hash to its oid)"


def _sha256(f: BufferedReader) -> str:
    """The sha256 of the rest of the file."""
    digest = hashlib.sha256()
    buf = bytearray(READ_BYTES)
    view = memoryview(buf)
    while n := f.readinto(buf):
        digest.update(view[:n])
    return digest.hexdigest()


def check_object(
    store: ObjectStore,
    ref: ObjectRef,
    content_hash: str | None = None,
    *,
    decode: bool = False,
    members: Mapping[tuple[int, int], str | None] | None = None,
) -> str | None:
    """None if the object is present, hashes to its oid, has a valid header (recording
    `content_hash`, when given) and with `decode` decodes to that hash; else "missing" or why
    it is corrupt. One read of the file. A pack (git_theta/store/pack.py) is checked the same
    way member by member: `members` maps (offset, length) of those the metadata uses to the
    content hash each must record (None: any)."""
    try:
        f = store.path(ref.oid).open("rb")
    except FileNotFoundError:
        return "missing"
    digest: str | None
    recorded: str | None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size != ref.size:
            return f"corrupt (its size is {size} bytes, not {ref.size})"
        pack = _pack_header(f)
        if pack is not None:
            return _check_pack(f, ref, content_hash, members or {}, decode, *pack)
        if members:
            return "corrupt (the metadata names members of it, but it is not a pack)"
        try:
            if decode:
                buffers = _buffers()
                decoded = read_object(f, buffers=buffers, hash_all=True)
                buffers.give(decoded.tensor.data)
                digest, recorded = decoded.sha256, decoded.content_hash
            else:
                digest, recorded = _hash_with_header(f)
        except CorruptObjectError as exc:
            return f"corrupt ({exc})"
    if digest != ref.oid:
        return "corrupt (its bytes do not hash to its oid)"
    if content_hash is not None and recorded != content_hash:
        return "corrupt (it holds other data than the metadata records)"
    return None


def _pack_header(f: BufferedReader) -> tuple[dict[str, Any], int] | None:
    """(header, its size) if the file is a pack, else None; the file is left at its start."""
    head = f.read(MAX_HEADER_BYTES)
    f.seek(0)
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_HEADER_BYTES)
    unpacker.feed(head)
    try:
        header = unpacker.unpack()
    except (ValueError, msgpack.UnpackException, msgpack.OutOfData):
        return None  # not a pack; the ordinary check says what is wrong
    return (header, unpacker.tell()) if isinstance(header, dict) and is_pack(header) else None


def _check_pack(
    f: BufferedReader,
    ref: ObjectRef,
    content_hash: str | None,
    members: Mapping[tuple[int, int], str | None],
    decode: bool,
    header: dict[str, Any],
    header_size: int,
) -> str | None:
    if _sha256(f) != ref.oid:
        return "corrupt (its bytes do not hash to its oid)"
    if content_hash is not None:
        return "corrupt (it is a pack where the metadata records one tensor's object)"
    try:
        held = set(member_offsets(header, header_size, ref.size))
    except CorruptObjectError as exc:
        return f"corrupt ({exc})"
    for (offset, length), want in sorted(members.items()):
        if (offset, length) not in held:
            return f"corrupt (the metadata names a member at offset {offset} it does not have)"
        blob = os.pread(f.fileno(), length, offset)
        got: str | None
        try:
            if decode:
                got = read_object(io.BytesIO(blob), hash_all=False).content_hash
            else:
                got = read_header(blob).get("hash")
        except CorruptObjectError as exc:
            return f"corrupt (its member at offset {offset}: {exc})"
        if want is not None and got != want:
            return (
                f"corrupt (its member at offset {offset} holds other data than the metadata "
                "records)"
            )
    return None


def _hash_with_header(f: BufferedReader) -> tuple[str | None, str | None]:
    """(sha256 of the file, the content hash its header records); raises CorruptObjectError
    when the header does not parse."""
    digest = hashlib.sha256()
    buf = bytearray(READ_BYTES)
    view = memoryview(buf)
    n = f.readinto(buf)
    header = read_header(bytes(view[: min(n, MAX_HEADER_BYTES)]))
    while n:
        digest.update(view[:n])
        n = f.readinto(buf)
    recorded = header.get("hash")
    return digest.hexdigest(), recorded if isinstance(recorded, str) else None


def move_aside(store: ObjectStore, oid: str) -> Path | None:
    """Move the object's file to `<root>/bad/<oid>`; returns where it went (None if absent)."""
    source = store.path(oid)
    bad = store.root / BAD_DIRNAME
    bad.mkdir(parents=True, exist_ok=True)
    target = bad / oid
    try:
        os.replace(source, target)
    except FileNotFoundError:
        return None
    return target


def _buffers() -> BufferPool:
    # One pool per thread: a thread checks one object at a time and reuses its buffer.
    pool: BufferPool | None = getattr(_local, "buffers", None)
    if pool is None:
        pool = _local.buffers = BufferPool()
    return pool
