from __future__ import annotations

import hashlib

import numpy as np
import pytest

from git_theta.errors import CorruptObjectError, MissingObjectError, StoreError
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore, decode_object, encode_object
from git_theta.store.serialize import read_header
from git_theta.tensor import RawTensor
from testing.checkpoints import ALL_DTYPES, random_array


def blob_of(tensor: RawTensor) -> bytes:
    return b"".join(bytes(chunk) for chunk in encode_object(tensor))


@pytest.mark.parametrize("dtype", sorted(ALL_DTYPES))
@pytest.mark.parametrize("shape", [(), (0,), (7, 3), (1_500_000,)])
def test_encode_decode_round_trip(dtype, shape):
    data = random_array(dtype, shape, np.random.default_rng(1)).tobytes()
    tensor = RawTensor(dtype, shape, data)
    out = decode_object(blob_of(tensor))
    assert (out.dtype, out.shape, bytes(out.data)) == (dtype, shape, data)


def test_float_weights_compress_their_exponent_plane():
    data = (np.random.default_rng(0).standard_normal(300_000) * 0.02).astype("<f4").tobytes()
    blob = blob_of(RawTensor("F32", (300_000,), data))
    header = read_header(blob)
    # Only the sign/exponent plane of trained-looking weights compresses; the rest stays raw.
    assert (header["codec"], header["zplanes"]) == ("planes", [3])
    assert len(blob) < 0.9 * len(data)


def test_incompressible_data_is_stored_raw():
    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    assert read_header(blob_of(RawTensor("U8", (100_000,), data)))["codec"] == "raw"


def test_encoding_is_deterministic():
    data = np.arange(100_000, dtype="<f4").tobytes()
    assert blob_of(RawTensor("F32", (100_000,), data)) == blob_of(
        RawTensor("F32", (100_000,), data)
    )


def test_store_layout_put_get(tmp_path):
    store = ObjectStore(tmp_path / "lfs")
    blob = blob_of(RawTensor("I32", (4,), np.arange(4, dtype="<i4").tobytes()))
    ref = store.put([blob])
    assert ref == ObjectRef(hashlib.sha256(blob).hexdigest(), len(blob))
    path = tmp_path / "lfs" / "objects" / ref.oid[:2] / ref.oid[2:4] / ref.oid
    assert path.read_bytes() == blob
    assert store.get(ref) == blob
    assert store.put([blob]) == ref  # present: not rewritten
    assert list((tmp_path / "lfs" / "tmp").iterdir()) == []


def test_missing_and_corrupt_objects(tmp_path):
    store = ObjectStore(tmp_path / "lfs")
    with pytest.raises(MissingObjectError):
        store.get(ObjectRef("0" * 64, 3))
    ref = store.put([b"some bytes"])
    store.path(ref.oid).write_bytes(b"some bytez")
    with pytest.raises(CorruptObjectError, match="corrupt"):
        store.get(ref)


def test_an_existing_object_of_the_wrong_size_is_an_error(tmp_path):
    store = ObjectStore(tmp_path / "lfs")
    ref = store.put([b"abc"])
    store.path(ref.oid).write_bytes(b"abcd")
    with pytest.raises(StoreError, match="wrong size"):
        store.put([b"abc"])


def test_decode_rejects_a_lying_header():
    blob = blob_of(RawTensor("F32", (4,), bytes(16)))
    with pytest.raises(CorruptObjectError):
        decode_object(blob[:-4])
    with pytest.raises(CorruptObjectError, match="unreadable|not a git-theta"):
        decode_object(b"\xff\xff\xff")
    with pytest.raises(CorruptObjectError, match="after its payload"):
        decode_object(blob + b"x")


def test_load_tensor_checks_the_oid_while_streaming(tmp_path):
    store = ObjectStore(tmp_path / "lfs")
    data = (np.random.default_rng(0).standard_normal(3_000_000) * 0.02).astype("<f4").tobytes()
    ref = store.put(encode_object(RawTensor("F32", (3_000_000,), data)))
    assert bytes(store.load_tensor(ref).data) == data
    blob = bytearray(store.path(ref.oid).read_bytes())
    blob[len(blob) // 2] ^= 1
    store.path(ref.oid).write_bytes(bytes(blob))
    with pytest.raises(CorruptObjectError, match=f"object {ref.oid} is corrupt"):
        store.load_tensor(ref)


def test_buffer_pool_reuses_what_was_given_back():
    from git_theta.tensor import BufferPool

    pool = BufferPool()
    first = pool.take(3 * 1024 * 1024)
    owner = first.obj
    pool.give(first)
    again = pool.take(2 * 1024 * 1024)
    assert again.obj is owner and len(again) == 2 * 1024 * 1024
    assert pool.take(1024 * 1024).obj is not owner  # handed out once, not twice
