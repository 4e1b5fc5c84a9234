"""Tensors read in pages: the same hash, bytes and objects as one buffer, and pages reused."""

from __future__ import annotations

import io

import numpy as np
import pytest

from git_theta.errors import CheckpointError
from git_theta.formats.safetensors import SafetensorsFormat
from git_theta.pages import PAGE_BYTES, PagePool, read_pages
from git_theta.store import encode_object, encode_paged
from git_theta.tensor import BufferPool, RawTensor, content_hash
from testing.checkpoints import random_array, random_params, write_safetensors

SIZES = [0, 1, PAGE_BYTES - 1, PAGE_BYTES, PAGE_BYTES + 1, 2 * PAGE_BYTES + PAGE_BYTES // 2]


@pytest.mark.parametrize("n", SIZES)
def test_paged_bytes_hash_and_join_like_one_buffer(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    pool = PagePool()
    paged = read_pages(io.BytesIO(data), n, pool, source="m", what="t")
    assert paged.content_hash() == content_hash(data)
    assert bytes(paged.join(BufferPool())) == data
    assert b"".join(bytes(c) for c in paged.chunks()) == data


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("F32", (2_500_001,)), ("BF16", (3_000_000,)), ("U8", (PAGE_BYTES,)), ("I64", (7,))],
)
def test_a_paged_tensor_encodes_to_the_same_object(dtype, shape):
    # The object names the tensor by the sha256 of its bytes: reading in pages must not
    # change a byte, or an unchanged tensor would be stored twice.
    data = random_array(dtype, shape, np.random.default_rng(3)).tobytes()
    paged = read_pages(io.BytesIO(data), len(data), PagePool(), source="m", what="t")
    digest = content_hash(data)
    whole = b"".join(bytes(c) for c in encode_object(RawTensor(dtype, shape, data)))
    assert b"".join(bytes(c) for c in encode_paged(dtype, shape, paged, digest)) == whole


def test_released_pages_are_used_again():
    pool = PagePool()
    data = bytes(3 * PAGE_BYTES)
    first = read_pages(io.BytesIO(data), len(data), pool, source="m", what="t")
    owners = {id(c.obj) for c in first.chunks()}
    first.release()
    second = read_pages(io.BytesIO(data), len(data), pool, source="m", what="t")
    assert {id(c.obj) for c in second.chunks()} == owners


def test_a_truncated_tensor_names_the_file_and_gives_its_pages_back():
    pool = PagePool()
    with pytest.raises(CheckpointError, match=r"^m\.safetensors: truncated checkpoint: "):
        read_pages(
            io.BytesIO(bytes(PAGE_BYTES + 10)),
            2 * PAGE_BYTES,
            pool,
            source="m.safetensors",
            what="parameter 'w'",
        )
    assert len(pool._free) == 2


def test_split_paged_yields_what_split_yields(tmp_path):
    params = random_params({"a": ("F32", (1_200_000,)), "b": ("F16", (5, 3)), "c": ("U8", (0,))})
    path = tmp_path / "m.safetensors"
    write_safetensors(path, params)
    fmt = SafetensorsFormat()
    with path.open("rb") as f:
        plain = {n: (t.dtype, t.shape, bytes(t.data)) for n, t in fmt.split(f, source="m").tensors}
    with path.open("rb") as f:
        split = fmt.split_paged(f, source="m", pages=PagePool())
        paged = {n: (t.dtype, t.shape, bytes(t.data.join())) for n, t in split.tensors}
    assert paged == plain
