"""Packs: the objects of many small tensors stored as one object (docs/metadata-spec.md, "Packs").

    pack   = msgpack({"v": 1, "pack": [length, ...]}) member ...
    member = an ordinary object (git_theta/store/serialize.py), `length` bytes

A checkpoint of tens of thousands of tiny tensors (mixture-of-experts experts, optimizer state)
made one file per tensor, and creating a file (with its shard directories) costs far more on
ext4 than writing a few KiB into it: a 20,000-tensor add spent most of its time in `openat`,
`mkdir` and `rename` (issue 14). A clean now writes the small changed tensors of each batch as
one pack; a parameter entry references its member by the pack's oid and size plus the member's
`offset` and `length`. The pack is an ordinary object to the store, transfers, fsck, prune and
du; each member carries its own content hash, so reading one member verifies it without the
rest of the pack.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack

from git_theta.errors import CorruptObjectError
from git_theta.metadata import ObjectRef
from git_theta.store.header import OBJECT_VERSION
from git_theta.store.objects import ObjectStore
from git_theta.store.serialize import MIN_COMPRESS_BYTES

__all__ = [
    "MAX_MEMBER_BYTES",
    "MIN_MEMBERS",
    "PackBuilder",
    "is_pack",
    "member_offsets",
]

# Tensors of at most this many raw bytes are packed: above it a file's creation costs little
# next to writing and hashing its bytes, and a tensor alone in its object is fetched alone.
MAX_MEMBER_BYTES = 64 * 1024
# A batch with fewer small tensors than this stores them as separate objects: a pack of a few
# members saves a few files and ties their lifetimes together (prune keeps a pack while any
# member is referenced). Batches hold up to 256 tensors (clean_run.BATCH_TENSORS).
MIN_MEMBERS = 16


def is_pack(header: dict[str, Any]) -> bool:
    """Whether an object header (the first msgpack map of an object) is a pack's."""
    return "pack" in header


def member_offsets(header: dict[str, Any], header_size: int, size: int) -> list[tuple[int, int]]:
    """The (offset, length) of each member of a pack of `size` bytes whose header, of
    `header_size` bytes, is `header`; the lengths must fill the pack exactly.

    Raises:
        CorruptObjectError: the member list is malformed or does not fill the pack.
    """
    lengths = header.get("pack")
    if not isinstance(lengths, list) or not all(
        type(n) is int and n > 0
        for n in lengths  # noqa: E721 (bools are not lengths)
    ):
        raise CorruptObjectError("pack header's member list is malformed")
    if header_size + sum(lengths) != size:
        raise CorruptObjectError("pack header's members do not fill the pack")
    out, at = [], header_size
    for n in lengths:
        out.append((at, n))
        at += n
    return out


class PackBuilder:
    """The small tensors' objects of one clean batch, gathered to be stored together."""

    def __init__(self) -> None:
        self._members: list[bytes] = []
        # dtype -> the planes its first compressible member's header chose (see `zplanes`)
        self._zplanes: dict[str, list[int]] = {}

    def zplanes(self, dtype: str) -> list[int] | None:
        """The byte planes to compress in the next member of `dtype`, or None to let the
        encoder sample them (which costs ~4x the encoding of a 4 KiB tensor).

        The first MIN_MEMBERS members choose their own, so members that end up stored as
        separate objects are byte for byte what encoding them alone gives (the same tensor is
        then the same object in any store). Later ones reuse the choice of the first member
        of their dtype big enough to compress: neighbouring tensors of a checkpoint share
        their planes' statistics, and a worse choice costs only size (each header says its
        own)."""
        return self._zplanes.get(dtype) if len(self._members) >= MIN_MEMBERS else None

    def add(self, chunks: Iterable[bytes | memoryview], dtype: str) -> int:
        """Take one object's bytes (chunks as `encode_object` yields them, each consumed before
        the next is asked for); its index, for `store`'s references."""
        data = bytearray()
        for chunk in chunks:
            if not data and dtype not in self._zplanes:
                header = msgpack.unpackb(chunk)  # the first chunk is the header
                if header.get("nbytes", 0) >= MIN_COMPRESS_BYTES:
                    self._zplanes[dtype] = list(header.get("zplanes", []))
            data += chunk
        self._members.append(bytes(data))
        return len(self._members) - 1

    def store(self, store: ObjectStore) -> list[ObjectRef]:
        """Put the members into `store`: one pack if there are at least MIN_MEMBERS, else one
        object each. Their references, in the order they were added."""
        members, self._members = self._members, []
        if len(members) < MIN_MEMBERS:
            return [store.put([m]) for m in members]
        head = msgpack.packb({"v": OBJECT_VERSION, "pack": [len(m) for m in members]})
        pack = store.put([b"".join([head, *members])])  # one hash update, one write
        refs, at = [], len(head)
        for m in members:
            refs.append(ObjectRef(pack.oid, pack.size, at, len(m)))
            at += len(m)
        return refs
