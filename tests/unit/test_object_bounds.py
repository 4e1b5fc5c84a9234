"""An object's header must agree with its data before anything is allocated; real objects,
the most compressible included, always do."""

from __future__ import annotations

import io
import struct

import msgpack
import numpy as np
import pytest

from git_theta.errors import CorruptObjectError, ObjectTooLargeError
from git_theta.store.header import Planes, min_payload
from git_theta.store.serialize import (
    BLOCK_BYTES,
    decode_object,
    encode_object,
    read_object,
)
from git_theta.tensor import RawTensor


def blob_of(tensor: RawTensor) -> bytes:
    return b"".join(bytes(c) for c in encode_object(tensor))


def _split(blob: bytes) -> tuple[dict, bytes]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(blob)
    header = unpacker.unpack()
    return header, blob[unpacker.tell() :]


@pytest.mark.parametrize("dtype", ["U8", "BF16", "F32", "F64"])
@pytest.mark.parametrize("nbytes", [256, 64 * 1024, BLOCK_BYTES + 8 * 1024])
def test_real_objects_never_reach_the_bound_even_all_zeros(dtype, nbytes):
    # Zeros compress as far as zstd goes: the bound must still hold with room to spare.
    itemsize = {"U8": 1, "BF16": 2, "F32": 4, "F64": 8}[dtype]
    blob = blob_of(RawTensor(dtype, (nbytes // itemsize,), bytes(nbytes)))
    header, payload = _split(blob)
    assert header["codec"] == "planes"
    planes = Planes(header["block"], frozenset(header["zplanes"]), frozenset())
    bound = min_payload(nbytes, itemsize, planes)
    assert bound < len(payload)
    assert bytes(decode_object(blob).data) == bytes(nbytes)


@pytest.mark.parametrize("dtype", ["BF16", "F32", "F64"])
@pytest.mark.parametrize("nbytes", [256, 64 * 1024, BLOCK_BYTES + 8 * 1024])
def test_masked_objects_never_reach_the_bound_even_all_zeros(dtype, nbytes):
    itemsize = {"BF16": 2, "F32": 4, "F64": 8}[dtype]
    planes = list(range(itemsize))
    tensor = RawTensor(dtype, (nbytes // itemsize,), bytes(nbytes))
    blob = b"".join(bytes(c) for c in encode_object(tensor, zplanes=[], mplanes=planes))
    header, payload = _split(blob)
    assert (header["v"], header["mplanes"]) == (2, planes)
    bound = min_payload(nbytes, itemsize, Planes(header["block"], frozenset(), frozenset(planes)))
    assert bound < len(payload)
    assert bytes(decode_object(blob).data) == bytes(nbytes)


def _with_header(blob: bytes, **changes) -> bytes:
    header, payload = _split(blob)
    header.update(changes)
    return msgpack.packb(header) + payload


def _planes_blob() -> bytes:
    values = np.random.default_rng(0).standard_normal(4096).astype("<f4")
    blob = blob_of(RawTensor("F32", (4096,), values.tobytes()))
    assert _split(blob)[0]["codec"] == "planes"
    return blob


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shape": [1 << 28], "nbytes": 1 << 30}, "declares 1073741824 bytes, more than its"),
        ({"shape": [1 << 38], "nbytes": 1 << 40}, "declares 1099511627776 bytes, more than its"),
        ({"shape": [1 << 28], "nbytes": 1 << 30, "block": 1 << 30}, "block size 1073741824"),
        ({"block": 6}, "block size 6 does not fit"),
        ({"zplanes": [0, 4]}, r"zplanes \[0, 4\] do not fit"),
        ({"zplanes": [True]}, r"zplanes \[True\]"),
        ({"nbytes": True}, "says True bytes"),
        ({"shape": [1 << 40, 1 << 40], "nbytes": 1 << 62}, "is larger than"),
        ({"shape": [-4096]}, "non-negative integers"),
        ({"dtype": ["F32"]}, "dtype is"),
    ],
)
def test_a_lying_planes_header_is_refused(changes, message):
    with pytest.raises(CorruptObjectError, match=message):
        decode_object(_with_header(_planes_blob(), **changes))


def test_a_raw_payload_must_be_exactly_nbytes():
    blob = blob_of(RawTensor("F32", (4,), bytes(16)))
    with pytest.raises(
        CorruptObjectError, match="declares 1073741824 raw bytes; its payload has 16"
    ):
        decode_object(_with_header(blob, shape=[1 << 28], nbytes=1 << 30))


def test_max_bytes_refuses_a_genuine_object_before_allocating():
    blob = blob_of(RawTensor("F32", (1024,), bytes(4096)))
    with pytest.raises(ObjectTooLargeError) as info:
        read_object(io.BytesIO(blob), max_bytes=4095)
    assert str(info.value) == (
        "declares a tensor of 4096 bytes (F32 [1024]), above theta.maxObjectBytes (4095); "
        "if the tensor is genuine, raise it with `git config theta.maxObjectBytes <bytes>`"
    )
    assert read_object(io.BytesIO(blob), max_bytes=4096).size == len(blob)


def test_a_frame_length_beyond_what_zstd_writes_is_refused():
    # Frames are read into a reused buffer sized for zstd's largest frame of a plane; a length
    # above that must fail as corruption, not grow the buffer or read past the frame (without
    # the check, these lengths fail later and differently: "ends early" or a zstd error).
    header, payload = _split(_planes_blob())
    count = 4096
    first = min(header["zplanes"])
    at = first * count  # the raw planes before the first compressed one
    (length,) = struct.unpack_from("<I", payload, at)
    assert 0 < length < count
    for lie in (count + count // 256 + 64, 0xFFFFFFFF):
        patched = payload[:at] + struct.pack("<I", lie) + payload[at + 4 :]
        with pytest.raises(CorruptObjectError, match=f"frame of {lie} bytes is larger"):
            decode_object(msgpack.packb(header) + patched)


def _masked_blob(values_extra: bytes = b"", bits_extra: bytes = b"") -> bytes:
    """A U16 object of one block: plane 0 raw, plane 1 masked, its frames built here (with
    `values_extra` or `bits_extra` appended to what they should hold)."""
    from git_theta.store.planes import LENGTH, compressor

    rng = np.random.default_rng(3)
    words = rng.integers(0, 1 << 16, 4096, dtype=np.uint16)
    words[rng.random(4096) < 0.9] &= 0x00FF  # a mostly-zero high plane
    blob = b"".join(
        bytes(c)
        for c in encode_object(RawTensor("U16", (4096,), words.tobytes()), zplanes=[], mplanes=[1])
    )
    header, _ = _split(blob)
    low = (words & 0xFF).astype(np.uint8)
    high = (words >> 8).astype(np.uint8)
    comp = compressor()
    bits = comp.compress(np.packbits(high != 0).tobytes() + bits_extra)
    values = comp.compress(high[high != 0].tobytes() + values_extra)
    payload = low.tobytes() + LENGTH.pack(len(bits)) + bits + LENGTH.pack(len(values)) + values
    return msgpack.packb(header) + payload


def test_a_hand_built_masked_object_decodes_and_a_wrong_count_is_refused():
    good = _masked_blob()
    assert good == b"".join(
        bytes(c)
        for c in encode_object(decode_object(good), zplanes=[], mplanes=[1])  # type: ignore[arg-type]
    )
    with pytest.raises(CorruptObjectError, match="decompresses to the wrong size"):
        decode_object(_masked_blob(values_extra=b"\x01"))
    with pytest.raises(CorruptObjectError, match="decompresses to the wrong size"):
        decode_object(_masked_blob(bits_extra=b"\x00"))


def _masked_header(**changes) -> bytes:
    header, payload = _split(_masked_blob())
    header.update(changes)
    return msgpack.packb(header) + payload


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"v": 1}, r"mplanes \[1\] do not fit its dtype or version"),
        ({"mplanes": []}, r"mplanes \[\] do not fit"),
        ({"zplanes": [1]}, r"mplanes \[1\] do not fit"),
        ({"mplanes": [2]}, r"mplanes \[2\] do not fit"),
        ({"mplanes": [True]}, r"mplanes \[True\] do not fit"),
        ({"mplanes": 1}, "mplanes 1 do not fit"),
        ({"dtype": "U8", "shape": [8192]}, r"mplanes \[1\] do not fit"),
        ({"codec": "raw"}, "version 2 with codec 'raw'"),
        ({"v": 3}, "version 3; this git-theta reads up to 2"),
    ],
)
def test_a_lying_masked_header_is_refused(changes, message):
    with pytest.raises(CorruptObjectError, match=message):
        decode_object(_masked_header(**changes))


def test_a_version_1_object_stays_version_1():
    # Objects without masked planes are the bytes they always were (dedup with old stores).
    header, _ = _split(_planes_blob())
    assert header["v"] == 1 and "mplanes" not in header
