"""An object's header must agree with its data before anything is allocated; real objects,
the most compressible included, always do."""

from __future__ import annotations

import io
import struct

import msgpack
import numpy as np
import pytest

from git_theta.errors import CorruptObjectError, ObjectTooLargeError
from git_theta.store.header import min_payload
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
    bound = min_payload(nbytes, itemsize, header["block"], frozenset(header["zplanes"]))
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
