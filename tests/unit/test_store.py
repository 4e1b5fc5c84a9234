from __future__ import annotations

import hashlib
import struct
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from git_theta.errors import CorruptObjectError, MissingObjectError, StoreError
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore, decode_object, encode_object
from git_theta.store.planes import join_planes, split_planes
from git_theta.store.serialize import read_header
from git_theta.tensor import RawTensor, allocate, content_hash
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
    with pytest.raises(CorruptObjectError, match="declares 16 raw bytes; its payload has 17"):
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


def _legacy_blob(tensor: RawTensor) -> bytes:
    """The object as written before headers carried the content hash."""
    blob = blob_of(tensor)
    header = read_header(blob)
    size = len(msgpack.packb(header))
    del header["hash"]
    return msgpack.packb(header) + blob[size:]


def _weights(n: int) -> bytes:
    return (np.random.default_rng(0).standard_normal(n) * 0.02).astype("<f4").tobytes()


def test_headers_carry_the_content_hash():
    data = _weights(300_000)
    assert read_header(blob_of(RawTensor("F32", (300_000,), data)))["hash"] == content_hash(data)


@pytest.mark.parametrize("itemsize", [2, 4, 8])
def test_planes_split_and_join_back(itemsize):
    raw = np.random.default_rng(itemsize).integers(0, 256, 4096 * itemsize, dtype=np.uint8)
    planes = split_planes(memoryview(raw), itemsize)
    for j, plane in enumerate(planes):
        np.testing.assert_array_equal(plane, raw[j::itemsize])
    out = np.zeros_like(raw)
    join_planes(planes, out, np.empty(2 * len(out), dtype=np.uint8))
    np.testing.assert_array_equal(out, raw)


def _flip(store: ObjectStore, ref: ObjectRef, offset: int) -> None:
    blob = bytearray(store.path(ref.oid).read_bytes())
    blob[offset] ^= 0x10
    store.path(ref.oid).write_bytes(bytes(blob))


@pytest.mark.parametrize("where", ["header hash", "frame", "raw plane", "last byte"])
def test_load_tensor_detects_a_changed_byte_anywhere(tmp_path, where):
    store = ObjectStore(tmp_path / "lfs")
    tensor = RawTensor("F32", (3_000_000,), _weights(3_000_000))
    blob = blob_of(tensor)
    ref = store.put([blob])
    header = read_header(blob)
    header_size = len(msgpack.packb(header))
    assert header["zplanes"] == [3]  # block 0: planes 0-2 raw, then plane 3's length and frame
    frame = header_size + 3 * (header["block"] // 4)
    (frame_size,) = struct.unpack("<I", blob[frame : frame + 4])
    offsets = {
        "header hash": blob.index(b"xxh3_128:") + 20,
        "frame": frame + 4 + frame_size // 2,
        "raw plane": header_size + 1000,
        "last byte": len(blob) - 1,
    }
    _flip(store, ref, offsets[where])
    with pytest.raises(CorruptObjectError, match=f"object {ref.oid} is corrupt"):
        store.load_tensor(ref)


def test_objects_without_a_content_hash_are_checked_against_their_oid(tmp_path):
    store = ObjectStore(tmp_path / "lfs")
    data = _weights(3_000_000)
    ref = store.put([_legacy_blob(RawTensor("F32", (3_000_000,), data))])
    assert bytes(store.load_tensor(ref).data) == data
    assert bytes(decode_object(store.get(ref)).data) == data
    _flip(store, ref, ref.size // 2)
    with pytest.raises(CorruptObjectError, match="do not match its oid"):
        store.load_tensor(ref)


def test_a_file_of_the_wrong_size_is_corrupt(tmp_path):
    store = ObjectStore(tmp_path / "lfs")
    ref = store.put(encode_object(RawTensor("F32", (1000,), _weights(1000))))
    store.path(ref.oid).write_bytes(store.path(ref.oid).read_bytes() + b"\0")
    with pytest.raises(CorruptObjectError, match="size does not match"):
        store.load_tensor(ref)


def test_allocate_gives_writable_private_buffers():
    buf = allocate(3 * 1024 * 1024 + 5)
    buf[:] = b"\x01" * len(buf)
    assert len(buf) == 3 * 1024 * 1024 + 5 and buf[-1] == 1


@pytest.mark.parametrize(
    ("dtype", "n"), [("F32", 3_000_000), ("U8", 5 * 1024 * 1024 + 3), ("I64", 0)]
)
def test_loading_returns_the_content_hash_it_verified(tmp_path, dtype, n):
    # Checkout trusts this hash instead of hashing each tensor a second time.
    store = ObjectStore(tmp_path / "lfs")
    data = random_array(dtype, (n,), np.random.default_rng(5)).tobytes()
    ref = store.put(encode_object(RawTensor(dtype, (n,), data)))
    tensor, digest = store.load_hashed(ref)
    assert bytes(tensor.data) == data
    assert digest == content_hash(data)


def test_an_entry_pointing_at_a_sound_object_of_other_data_is_refused(tmp_path):
    from git_theta.metadata import ParamEntry
    from git_theta.updates.rebuild import load_entry

    store = ObjectStore(tmp_path / "lfs")
    data = _weights(1000)
    ref = store.put(encode_object(RawTensor("F32", (1000,), data)))
    entry = ParamEntry("F32", (1000,), content_hash(_weights(999) + b"\0" * 4), ref)
    with pytest.raises(CorruptObjectError, match="holds other data than the metadata records"):
        load_entry(entry, store)


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64", "I32"])
def test_planes_split_without_numpy_give_the_same_object(dtype, tmp_path):
    # A commit that changed only small tensors encodes them by slicing bytes, in a process
    # that never imports numpy; the object must be the one numpy's split makes, or the same
    # tensor would get two names.
    shape = (300_001,)
    data = random_array(dtype, shape, np.random.default_rng(2)).tobytes()
    src = tmp_path / "t.bin"
    src.write_bytes(data)
    code = (
        "import hashlib, sys;"
        "from git_theta.store import encode_object;"
        "from git_theta.tensor import RawTensor;"
        f"data = open({str(src)!r}, 'rb').read();"
        f"blob = b''.join(bytes(c) for c in encode_object(RawTensor({dtype!r}, {shape!r}, data)));"
        "print(hashlib.sha256(blob).hexdigest(), 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    blob = blob_of(RawTensor(dtype, shape, data))  # numpy is loaded here: its split
    assert out.stdout.split() == [hashlib.sha256(blob).hexdigest(), "False"]


def test_header_read_stops_exactly_at_the_payload_and_names_broken_headers(tmp_path):
    # The header is read in one block and the file is sought back to its end: the payload
    # must start right after it, and a cut or oversized header must say so.
    store = ObjectStore(tmp_path / "lfs")
    data = _weights(50)
    ref = store.put(encode_object(RawTensor("F32", (50,), data)))
    assert bytes(store.load_tensor(ref).data) == data
    header = msgpack.packb({"v": 1, "dtype": "F32", "shape": [50]})
    with pytest.raises(CorruptObjectError, match="ends inside it"):
        decode_object(header[:-3])
    too_long = msgpack.packb({"v": 1, "pad": "x" * (70 * 1024)})
    with pytest.raises(CorruptObjectError, match="too long"):
        decode_object(too_long)
