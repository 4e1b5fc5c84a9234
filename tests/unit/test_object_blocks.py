"""An object's blocks decoded one at a time, in any order (git_theta/store/blocks.py): the same
bytes as decoding it whole, for every codec; lying length prefixes and changed bytes are
corruption, found before or when the caller verifies."""

from __future__ import annotations

import io

import numpy as np
import pytest

from git_theta.errors import CorruptObjectError
from git_theta.limits import DEFAULT_MAX_OBJECT_BYTES
from git_theta.store.blocks import ObjectBlocks
from git_theta.store.planes import BLOCK_BYTES
from git_theta.store.serialize import decode_object, encode_object, read_header
from git_theta.tensor import RawTensor, content_hash


def _weights(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).normal(0, 0.02, n).astype("<f4").tobytes()


def _sparse_words(nbytes: int, dtype: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, nbytes, dtype=np.uint8)
    data[rng.random(nbytes) < 0.85] = 0
    return data.tobytes()


def _objects() -> list[tuple[str, bytes]]:
    """(what, object bytes): raw, planes, masked planes and a one-byte-wide coded plane, each
    over 2-3 blocks with a short last one."""
    n = 2 * BLOCK_BYTES + 4096
    weights = RawTensor("F32", (n // 4,), _weights(n // 4))
    noise = RawTensor("U8", (n,), np.random.default_rng(1).bytes(n))
    words = RawTensor("U32", (n // 4,), _sparse_words(n, "U32"))
    small = RawTensor("U8", (n,), _sparse_words(n, "U8"))
    made = [
        ("planes", encode_object(weights)),
        ("raw", encode_object(noise)),
        ("masked", encode_object(words, zplanes=[], mplanes=[0, 1, 2, 3])),
        ("one byte wide", encode_object(small)),
    ]
    return [(what, b"".join(bytes(c) for c in chunks)) for what, chunks in made]


@pytest.mark.parametrize(
    ("what", "blob"), _objects(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_blocks_in_any_order_are_the_whole_decode(what: str, blob: bytes):
    whole = bytes(decode_object(blob).data)
    blocks = ObjectBlocks(io.BytesIO(blob), DEFAULT_MAX_OBJECT_BYTES)
    assert blocks.count == 3 and blocks.block == BLOCK_BYTES
    got = {}
    for index in (2, 0, 1, 0):
        out = memoryview(bytearray(blocks.size(index)))
        blocks.decode(index, out)
        got[index] = bytes(out)
    assert b"".join(got[i] for i in range(3)) == whole
    blocks.verify(content_hash(whole))
    with pytest.raises(CorruptObjectError, match="does not match the hash"):
        blocks.verify(content_hash(whole[1:]))
    if what == "masked":
        assert read_header(blob)["mplanes"] == [0, 1, 2, 3]


def test_a_lying_length_prefix_is_corruption_before_any_block_decodes():
    blob = bytearray(_objects()[0][1])  # planes: the exponent plane of each block is a frame
    prefix = blob.index(b"\x28\xb5\x2f\xfd") - 4  # the length before the first zstd frame
    blob[prefix : prefix + 4] = (1 << 30).to_bytes(4, "little")
    blocks = ObjectBlocks(io.BytesIO(bytes(blob)), DEFAULT_MAX_OBJECT_BYTES)
    with pytest.raises(CorruptObjectError, match="does not fit its plane or its payload"):
        blocks.decode(2, memoryview(bytearray(blocks.size(2))))


def test_a_payload_with_bytes_after_its_last_block_is_corruption():
    blob = _objects()[1][1] + b"\0" * 8
    with pytest.raises(CorruptObjectError):
        blocks = ObjectBlocks(io.BytesIO(blob), DEFAULT_MAX_OBJECT_BYTES)
        blocks.decode(0, memoryview(bytearray(blocks.size(0))))


def test_a_changed_payload_byte_fails_the_callers_verify():
    what, blob = _objects()[1]  # raw: a changed byte decodes, only the hash can tell
    whole = bytes(decode_object(blob).data)
    changed = bytearray(blob)
    changed[-100] ^= 0xFF
    blocks = ObjectBlocks(io.BytesIO(bytes(changed)), DEFAULT_MAX_OBJECT_BYTES)
    digest = []
    for index in range(blocks.count):
        out = memoryview(bytearray(blocks.size(index)))
        blocks.decode(index, out)
        digest.append(bytes(out))
    assert b"".join(digest) != whole
    with pytest.raises(CorruptObjectError):
        blocks.verify(content_hash(b"".join(digest)))
