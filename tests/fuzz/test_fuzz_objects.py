"""Hostile objects: damaged bytes, lying headers, codecs and zstd frames. Reading one gives
the exact tensor it was made from or CorruptObjectError, within a memory bound that the
object's own size justifies (a 40-byte object declaring 1 TiB must not reserve it)."""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from git_theta.errors import CorruptObjectError
from git_theta.metadata import ObjectRef, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.store.serialize import read_header, read_object
from git_theta.tensor import RawTensor, content_hash, dtype_nbytes
from git_theta.updates.rebuild import load_entry
from testing.checkpoints import ALL_DTYPES, random_array
from testing.fuzzing import assert_one_line, memory_cap, time_limit
from testing.mutations import Blob, hostile_names, mutated

# Address space a case may add. Every object drawn here decodes to at most a few kB; a
# decoder that sizes buffers from the header alone meets this cap on a lying one.
MEMORY_CAP = 256 * 1024 * 1024

_HEADER_KEYS = ["v", "dtype", "shape", "nbytes", "codec", "hash", "block", "zplanes"]
_msgpack_ints = st.one_of(
    st.sampled_from([-1, 0, 1, 3, 2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**64 - 1]),
    st.integers(-(2**63), 2**64 - 1),
)
_msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        _msgpack_ints,
        st.floats(),
        hostile_names.filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
        st.binary(max_size=8),
    ),
    lambda children: st.lists(children, max_size=4),
    max_leaves=6,
)


@st.composite
def tensors(draw: st.DrawFn) -> RawTensor:
    """Small tensors of every dtype; 2-D float ones large enough to take the planes codec."""
    dtype = draw(st.sampled_from(sorted(ALL_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 48), max_size=2)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    array = random_array(dtype, shape, rng)
    return RawTensor(dtype, shape, np.ascontiguousarray(array).tobytes())


def _object(tensor: RawTensor) -> bytes:
    return b"".join(bytes(chunk) for chunk in encode_object(tensor))


def _split(blob: bytes) -> tuple[dict, bytes]:
    header = read_header(blob)
    used = len(msgpack.packb(header))
    return header, blob[used:]


@st.composite
def hostile_objects(draw: st.DrawFn) -> tuple[RawTensor, Blob]:
    """A tensor and its object, damaged: bytes anywhere, or header fields set to hostile
    values (sizes that lie, unknown codecs and dtypes, block sizes, plane lists)."""
    tensor = draw(tensors())
    blob = _object(tensor)
    kind = draw(st.sampled_from(["bytes", "header", "both", "none"]))
    if kind in ("header", "both"):
        header, payload = _split(blob)
        if draw(st.booleans()):  # a size that agrees with itself, and not with the payload
            n = draw(st.sampled_from([2**20, 2**30, 2**40, 2**62]))
            header.update(dtype="U8", shape=[n], nbytes=n)
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(_HEADER_KEYS))
            if draw(st.booleans()):
                header.pop(key, None)
            else:
                header[key] = draw(_msgpack_values)
        blob = msgpack.packb(header) + payload
    if kind in ("bytes", "both"):
        blob = draw(mutated(blob))
    return tensor, Blob(blob)


def _check_decoded(blob: bytes, hash_all: bool) -> RawTensor | None:
    with time_limit(), memory_cap(MEMORY_CAP):
        try:
            decoded = read_object(io.BytesIO(blob), hash_all=hash_all)
        except CorruptObjectError as exc:
            assert_one_line(exc)
            return None
    tensor = decoded.tensor
    assert len(memoryview(tensor.data).cast("B")) == dtype_nbytes(tensor.dtype, tensor.shape)
    assert decoded.content_hash == content_hash(tensor.data)
    header_hash = read_header(blob).get("hash")
    if header_hash is not None:
        assert decoded.content_hash == header_hash
    if decoded.sha256 is not None:
        assert decoded.sha256 == hashlib.sha256(blob).hexdigest()
        assert decoded.size == len(blob)
    return tensor


@given(case=hostile_objects(), hash_all=st.booleans())
def test_read_object_decodes_what_its_header_promises_or_refuses(case, hash_all):
    original, blob = case
    tensor = _check_decoded(blob, hash_all)
    if blob == _object(original):
        assert tensor is not None
        assert (tensor.dtype, tensor.shape, bytes(tensor.data)) == (
            original.dtype,
            original.shape,
            bytes(original.data),
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ObjectStore:
    return ObjectStore(tmp_path_factory.mktemp("objects") / "theta")


@given(case=hostile_objects())
def test_a_parameter_is_rebuilt_exactly_or_its_object_is_corrupt(store, case):
    """Metadata names an object; the file under that name holds damaged bytes (a bad disk, a
    hand edit). Rebuilding the parameter gives its exact bytes or CorruptObjectError."""
    original, blob = case
    ref = store.put([_object(original)])
    path = store.path(ref.oid)
    path.write_bytes(blob)
    entry = ParamEntry(
        original.dtype,
        original.shape,
        content_hash(original.data),
        ObjectRef(ref.oid, len(blob)),  # the size agrees, so the bytes are decoded
    )
    try:
        with time_limit(), memory_cap(MEMORY_CAP):
            try:
                tensor = load_entry(entry, store)
            except CorruptObjectError as exc:
                assert_one_line(exc)
                return
    finally:
        path.unlink()
    assert (tensor.dtype, tensor.shape, bytes(tensor.data)) == (
        original.dtype,
        original.shape,
        bytes(original.data),
    )


# ---- objects that declare far more than they hold (issue 14) ----------------------------


def _declaring(nbytes: int, payload: bytes, **fields: object) -> Blob:
    header = {"v": 1, "dtype": "U8", "shape": [nbytes], "nbytes": nbytes, "codec": "raw"}
    header.update(fields)
    return Blob(msgpack.packb(header) + payload)


@functools.cache
def _zero_frame(nbytes: int) -> bytes:
    """A zstd frame of `nbytes` zeros, made in 1 MiB steps (a few kB per GiB)."""
    comp = zstandard.ZstdCompressor(level=3).compressobj()
    chunk = bytes(1024 * 1024)
    parts = [comp.compress(chunk) for _ in range(nbytes // len(chunk))]
    return b"".join(parts) + comp.flush()


def _bomb(nbytes: int) -> Blob:
    frame = _zero_frame(nbytes)
    return _declaring(
        nbytes,
        len(frame).to_bytes(4, "little") + frame,
        codec="planes",
        block=nbytes,
        zplanes=[0],
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: _declaring(2**40, b"\0" * 64),
        lambda: _declaring(2**30, b"\0" * 64),
        lambda: _declaring(2**40, b"\0" * 64, codec="planes", block=2**40, zplanes=[0]),
        lambda: _bomb(2**30),
    ],
    ids=["raw-declares-1TiB", "raw-declares-1GiB", "planes-declares-1TiB", "zstd-bomb-1GiB"],
)
def test_objects_declaring_more_than_they_hold(make, tmp_path: Path):
    blob = make()
    assert _check_decoded(blob, hash_all=True) is None
    assert _check_decoded(blob, hash_all=False) is None
