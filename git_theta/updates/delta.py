"""Lossless deltas: a changed tensor as the XOR of its bit patterns with an earlier version
(the parameter's dense snapshot, as `auto` and `delta` write them: git_theta/updates/snapshot.py).

A full fine-tune changes every element a little: the sign and exponent bits and the high
mantissa bits of most elements stay the same, so the XOR of the two versions' raw bytes is
mostly zero in its high byte planes. Stored as an object of unsigned integers as wide as the
parameter's elements, the store's byte-plane codec (git_theta/store/serialize.py) compresses
those planes to almost nothing and keeps the noisy low planes raw. XOR works on bytes, so the
round trip is exact for every dtype (NaN payloads, infinities, signed zeros, subnormals,
integers, bool, packed sub-byte floats): `before ^ (before ^ after) == after`.

The record names the content hash of the tensor it applies to (`base`), so a delta applied to
anything else is reported instead of silently giving wrong weights.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash

from git_theta.errors import MetadataError
from git_theta.pages import PAGE_BYTES, PagedBytes
from git_theta.store import encode_object, encode_paged
from git_theta.store.serialize import choose_codings
from git_theta.tensor import (
    HASH_PREFIX,
    RawTensor,
    allocate,
    content_hash,
    dtype_nbytes,
    storage_itemsize,
)
from git_theta.updates.base import Inferred, Loader, UpdateType, Writer, object_ref

if TYPE_CHECKING:
    from git_theta.formats.base import PagedTensor
    from git_theta.metadata import ObjectRef, ParamEntry
    from git_theta.store import ObjectStore
    from git_theta.tensor import BufferPool

__all__ = [
    "MIN_PLANE_SAVING",
    "TRANSFORM",
    "Delta",
    "apply_in_place",
    "checked_diff",
    "rebuild_fused",
    "delta_bytes",
    "delta_in_place",
    "delta_object",
    "delta_paged_object",
    "delta_record",
    "encoded_size",
    "record_of",
    "word_dtype",
    "sample",
    "xor",
    "xor_into",
]

# The one transform of this version: exact on bytes, no carries or sign handling. Other exact
# transforms (subtracting the bit patterns as integers, zigzag coded) are not measured yet;
# the record's `transform` lets one be added without breaking readers.
TRANSFORM = "xor"
# The object holding the XOR: unsigned integers of the element width, so its byte planes
# line up with the parameter's (byte j of every element in plane j).
_WORD_DTYPE = {1: "U8", 2: "U16", 4: "U32", 8: "U64"}
# Bytes of each of the evenly spaced slices sampled to estimate stored sizes.
SAMPLE_SLICE_BYTES = 64 * 1024
SAMPLE_SLICES = 4
# A plane of the XOR is zstd-coded only if a sample of it shrinks by this fraction (the
# store's rule for other objects is 3%). Past its zero high planes, an XOR's planes are either
# noise or, for large steps, planes that shrink by 10-15% at zstd's slowest speed: coding them
# cost a fully changed add about 0.06x of a dense add's CPU (and every checkout of the version
# their decompression) for 3-7% of the object (bench_delta.py, r = 0.05). Planes that shrink by
# more (a step of r <= 1e-2 leaves its middle plane at <= 0.63) are still coded.
MIN_PLANE_SAVING = 0.2


def word_dtype(dtype: str) -> str:
    return _WORD_DTYPE[storage_itemsize(dtype)]


def xor(
    a: bytes | bytearray | memoryview,
    b: bytes | bytearray | memoryview,
    out: memoryview | None = None,
) -> memoryview:
    """The bytewise XOR of two equally long buffers (its own inverse), into `out` if given (a
    writable buffer of that length, which may be `a` or `b` itself)."""
    if out is None:
        # A buffer that is not zeroed first: the XOR overwrites every byte.
        out = allocate(len(a))
    # Whole 8-byte words where the length allows: 8x fewer numpy elements than bytes.
    word = "<u8" if len(a) % 8 == 0 else "u1"
    np.bitwise_xor(
        np.frombuffer(a, dtype=word),
        np.frombuffer(b, dtype=word),
        out=np.frombuffer(out, dtype=word),
    )
    return out


def xor_into(into: memoryview, chunks: Iterable[memoryview]) -> str:
    """XOR the bytes given as `chunks` (in order, as long as `into` in all) into `into`; the
    content hash of the result, taken a chunk at a time while it is in cache."""
    digest = xxhash.xxh3_128()
    at = 0
    for chunk in chunks:
        part = into[at : at + len(chunk)]
        xor(part, chunk, out=part)
        digest.update(part)
        at += len(chunk)
    return HASH_PREFIX + digest.hexdigest()


def pieces(data: bytes | bytearray | memoryview | PagedBytes) -> Iterator[memoryview]:
    """Tensor bytes as chunks of at most a page (a page-sized piece stays in cache)."""
    if isinstance(data, PagedBytes):
        yield from data.chunks()
        return
    flat = memoryview(data).cast("B")
    for start in range(0, len(flat), PAGE_BYTES):
        yield flat[start : start + PAGE_BYTES]


def _helper() -> Executor:
    """This thread's helper: a thread of its own that encodes every other block of a large
    delta object (planes.encode_blocks). The last tensors of a checkpoint are encoded while
    the reader has nothing left to read, and a delta costs about twice a dense object's
    encoding (its snapshot decoded, its sparse high plane zstd's slowest input): without it
    one core would do that alone. One per calling thread, never shared: the blocks a helper
    encodes are views of its scratch, which a second caller's block would overwrite before
    the first had taken them. Not the clean's worker pool either: a worker waiting on a task
    queued behind other workers' could wait for ever."""
    helper: Executor | None = getattr(_HELPERS, "executor", None)
    if helper is None:
        helper = _HELPERS.executor = ThreadPoolExecutor(1, thread_name_prefix="git-theta-delta")
    return helper


_HELPERS = threading.local()


def delta_object(diff: RawTensor, digest: str | None = None) -> Iterator[bytes | memoryview]:
    """The object bytes of an XOR (`delta_bytes`): planes coded by MIN_PLANE_SAVING (its
    mostly-zero high planes masked where that pays), a large object's blocks on two
    threads."""
    data = memoryview(diff.data).cast("B")
    zplanes, mplanes = choose_codings(
        data, storage_itemsize(diff.dtype), min_saving=MIN_PLANE_SAVING
    )
    helper = _helper() if len(data) > PAGE_BYTES else None
    return encode_object(diff, digest=digest, zplanes=zplanes, helper=helper, mplanes=mplanes)


def delta_paged_object(dtype: str, xored: PagedBytes, digest: str) -> Iterator[bytes | memoryview]:
    """`delta_object` of the XOR of two versions of a `dtype` tensor, held in `xored`'s pages
    (its content hash `digest`): the same object bytes, with no joined copy."""
    itemsize = storage_itemsize(dtype)
    first = next(xored.chunks())
    zplanes, mplanes = choose_codings(first, itemsize, min_saving=MIN_PLANE_SAVING)
    helper = _helper() if xored.nbytes > PAGE_BYTES else None
    shape = (xored.nbytes // itemsize,)
    return encode_paged(word_dtype(dtype), shape, xored, digest, zplanes, helper, mplanes)


def encoded_size(tensor: RawTensor, *, delta: bool = False) -> int:
    """Bytes of the object the store would write for `tensor` (the real codec, run); `delta`:
    for an XOR, coded as `delta_object` codes it."""
    chunks = delta_object(tensor) if delta else encode_object(tensor)
    return sum(len(chunk) for chunk in chunks)


def sample(tensor: RawTensor | PagedTensor) -> RawTensor:
    """A flat tensor of evenly spaced slices of `tensor`'s bytes (the whole tensor when it is
    small), cut on element boundaries, as unsigned words: the codec treats it as it treats
    the tensor (it looks only at the element width), so its stored size estimates theirs."""
    itemsize = storage_itemsize(tensor.dtype)
    nbytes = len(tensor.data)
    if nbytes <= SAMPLE_SLICE_BYTES * SAMPLE_SLICES:
        picked = b"".join(pieces(tensor.data))
    else:
        span = SAMPLE_SLICE_BYTES - SAMPLE_SLICE_BYTES % itemsize
        step = (nbytes - span) // (SAMPLE_SLICES - 1)
        starts = [i * step - (i * step) % itemsize for i in range(SAMPLE_SLICES)]
        picked = b"".join(_slice(tensor.data, s, span) for s in starts)
    return RawTensor(word_dtype(tensor.dtype), (len(picked) // itemsize,), picked)


def _slice(data: bytes | bytearray | memoryview | PagedBytes, start: int, n: int) -> bytes:
    """Bytes `start` to `start + n` of a tensor's bytes, which may sit in pages."""
    if not isinstance(data, PagedBytes):
        return bytes(memoryview(data).cast("B")[start : start + n])
    out = bytearray()
    for index, chunk in enumerate(data.chunks()):
        lo = max(start - index * PAGE_BYTES, 0)
        hi = min(start + n - index * PAGE_BYTES, len(chunk))
        if lo < hi:
            out += chunk[lo:hi]
    return bytes(out)


def delta_bytes(before: RawTensor, after: RawTensor, into: memoryview | None = None) -> RawTensor:
    """The XOR of two versions as a flat tensor of unsigned words (the delta object's tensor),
    written into `into` if given (see `xor`)."""
    words = word_dtype(after.dtype)
    data = xor(before.data, after.data, out=into)
    return RawTensor(words, (len(data) // storage_itemsize(after.dtype),), data)


def checked_diff(before: RawTensor, record: Mapping[str, Any], load: Loader) -> RawTensor:
    """The XOR object of a delta `record` applied to `before`, checked against both.

    Raises:
        MetadataError: an unknown transform, another `before` than the record names, or an
            object of the wrong width or length.
    """
    if record.get("transform", TRANSFORM) != TRANSFORM:
        raise MetadataError(
            f"a delta update uses transform {record.get('transform')!r}; this git-theta "
            f"knows only {TRANSFORM!r} (a newer git-theta may be needed)"
        )
    base = record.get("base")
    if base is not None and content_hash(before.data) != base:
        raise MetadataError("a delta update applies to another version than the one before it")
    diff = load(object_ref(record, "object"))
    nbytes = dtype_nbytes(before.dtype, before.shape)
    if diff.dtype != word_dtype(before.dtype) or len(diff.data) != nbytes:
        raise MetadataError(
            f"a delta update's object holds {diff.dtype} x {len(diff.data)} bytes, its "
            f"parameter {before.dtype} x {nbytes}"
        )
    return diff


def delta_record(
    before: RawTensor,
    after: RawTensor,
    base: str,
    write: Writer,
    into: memoryview | None = None,
) -> dict[str, Any]:
    """The record of the delta taking `before` (whose content hash is `base`) to `after`, its
    object written with `write`; `into` as for `xor`."""
    return record_of(base, write(delta_bytes(before, after, into)))


def record_of(base: str, ref: ObjectRef) -> dict[str, Any]:
    """The record of a delta whose XOR object is `ref`, applying to the tensor of content
    hash `base`."""
    return {"type": Delta.name, "transform": TRANSFORM, "base": base, "object": ref.to_json()}


def delta_in_place(
    before: RawTensor,
    base: str,
    after: RawTensor | PagedTensor,
    put: Callable[[Iterator[bytes | memoryview]], ObjectRef],
) -> dict[str, Any]:
    """The record of the delta taking `before` (whose content hash is `base`) to `after`, its
    object stored with `put`. The XOR is made in `before`'s buffer, which it overwrites (a
    copy if that is read-only), a page of `after` at a time: `after` may sit in pages (no
    joined copy of it), and each page of the XOR is hashed while in cache (the object's header
    needs its hash; a pass of its own would read it all again)."""
    into = before.data
    if not isinstance(into, memoryview) or into.readonly:
        into = allocate(len(before.data))
        into[:] = before.data
    digest = xor_into(into, pieces(after.data))
    words = RawTensor(word_dtype(after.dtype), (len(into) // storage_itemsize(after.dtype),), into)
    return record_of(base, put(delta_object(words, digest)))


def apply_in_place(before: RawTensor, record: Mapping[str, Any], store: ObjectStore) -> str | None:
    """Apply delta `record` to `before`, whose buffer is the caller's to overwrite, reading the
    XOR object a block at a time: each block is XORed into `before` and the result hashed
    while in cache (no buffer the size of the tensor for the XOR, no separate passes to XOR and
    to hash the result). The content hash of the result; None, with `before` untouched, when
    the object carries no content hash to check its blocks by (the caller applies it whole).

    Raises:
        MetadataError: as `checked_diff` (an unknown transform, an object of the wrong width
            or length; the record's `base` is the caller's to check).
        CorruptObjectError: the object's blocks do not hash to its header's hash.
    """
    from git_theta.store.blocks import block_buffer

    if record.get("transform", TRANSFORM) != TRANSFORM:
        return None  # checked_diff names it
    with store.blocks(object_ref(record, "object")) as blocks:
        layout = blocks.layout
        if layout.expected is None:
            return None
        if layout.dtype != word_dtype(before.dtype) or layout.nbytes != len(before.data):
            raise MetadataError(
                f"a delta update's object holds {layout.dtype} x {layout.nbytes} bytes, its "
                f"parameter {before.dtype} x {len(before.data)}"
            )
        data = memoryview(before.data).cast("B")
        scratch = block_buffer()
        diff, result = xxhash.xxh3_128(), xxhash.xxh3_128()
        for index in range(blocks.count):
            block = scratch[: blocks.size(index)]
            blocks.decode(index, block)
            diff.update(block)
            part = data[index * blocks.block : index * blocks.block + len(block)]
            xor(part, block, out=part)
            result.update(part)
        blocks.verify(HASH_PREFIX + diff.hexdigest())
    return HASH_PREFIX + result.hexdigest()


def rebuild_fused(
    entry: ParamEntry, store: ObjectStore, buffers: BufferPool | None = None
) -> RawTensor | None:
    """The tensor of `entry`, a snapshot plus one delta (what `auto` and `delta` write),
    rebuilt a block at a time in the plane domain: the byte planes of an XOR are the XORs of
    the byte planes, so each block's planes of the snapshot and of the XOR object are decoded
    (not joined), XORed in cache and joined once into the result. One join instead of two
    (joining is most of a decode's CPU) and one hash, the result's, instead of three: it is
    checked against the entry's hash, which checks the snapshot and the XOR with it.

    None when the entry or its objects are laid out otherwise, or the result does not hash to
    the entry's: the caller's object-by-object path then rebuilds it or names what is wrong.
    """
    import numpy as np

    from git_theta.store.blocks import block_buffer
    from git_theta.store.planes import frame_bound, join_planes, scratch_buffer

    record = entry.updates[0]
    if record.get("transform", TRANSFORM) != TRANSFORM:
        return None
    try:
        ref = object_ref(record, "object")
    except (KeyError, MetadataError):
        return None
    with store.blocks(entry.object) as snap, store.blocks(ref) as diff:
        ls, ld = snap.layout, diff.layout
        if (
            (ls.dtype, ls.shape) != (entry.dtype, entry.shape)
            or ld.dtype != word_dtype(entry.dtype)
            or ld.nbytes != ls.nbytes
            or ls.planes is None
            or ld.planes is None
            or ls.itemsize < 2
            or snap.block != diff.block
        ):
            return None
        out = buffers.take(ls.nbytes) if buffers is not None else allocate(ls.nbytes)
        result = np.frombuffer(out, dtype=np.uint8)
        digest = xxhash.xxh3_128()
        for index in range(snap.count):
            n = snap.size(index)
            scratch = scratch_buffer(3 * n + frame_bound(n // ls.itemsize))
            mine, work = scratch[:n], scratch[n:]
            planes = snap.planes(index, mine, work)
            theirs = np.frombuffer(block_buffer(), dtype=np.uint8)[:n]
            diff.planes(index, theirs, work)
            xor(mine.data, theirs.data, out=mine.data)
            target = result[index * snap.block : index * snap.block + n]
            join_planes(planes, target, scratch[n : 3 * n])
            digest.update(target.data)
    if HASH_PREFIX + digest.hexdigest() != entry.hash:
        if buffers is not None:
            buffers.give(out)
        return None
    return RawTensor(entry.dtype, entry.shape, out)


class Delta(UpdateType):
    name = "delta"
    summary = "XOR of the bit patterns with the previous version, entropy-coded (exact)"

    def apply(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> RawTensor:
        diff = checked_diff(before, record, load)
        # The loaded object is a fresh buffer no one else holds: the result goes into it,
        # sparing a checkout a new buffer's allocation and page faults.
        into = diff.data if isinstance(diff.data, memoryview) and not diff.data.readonly else None
        return RawTensor(before.dtype, before.shape, xor(before.data, diff.data, out=into))

    def infer(
        self, before: RawTensor, after: RawTensor, write: Writer, options: Mapping[str, Any]
    ) -> Inferred | None:
        """The XOR of `after` with `before`; `options["base"]` may give `before`'s content
        hash."""
        if (before.dtype, before.shape) != (after.dtype, after.shape) or math.prod(
            after.shape
        ) == 0:
            return None
        # The caller may know the base's hash already (the previous entry's, for an exact chain).
        base = options.get("base") or content_hash(before.data)
        return Inferred(delta_record(before, after, base, write), exact=True)
