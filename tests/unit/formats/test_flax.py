"""Flax msgpack checkpoints: files flax wrote, files built per flax's published format, and
hostile input."""

from __future__ import annotations

import importlib.util
import io
import struct
from pathlib import Path

import msgpack
import numpy as np
import pytest

from git_theta.errors import CheckpointError
from git_theta.formats import get_format, sniff_format
from git_theta.formats.base import TensorSpec
from git_theta.formats.flax import FLAX_DTYPES, FlaxFormat
from git_theta.tensor import RawTensor

FIXTURE = Path(__file__).parents[2] / "fixtures" / "flax" / "tiny.msgpack"
FLAX = FlaxFormat()


def _ext_pack(obj):
    """flax's encoding of an array, from its published format (flax/serialization.py):
    extension type 1 holding msgpack `[shape, dtype name, C-order bytes]`."""
    if isinstance(obj, np.ndarray):
        payload = msgpack.packb((obj.shape, obj.dtype.name, obj.tobytes("C")), use_bin_type=True)
        return msgpack.ExtType(1, payload)
    raise TypeError(type(obj))


def _flax_bytes(tree) -> bytes:
    return msgpack.packb(tree, default=_ext_pack, strict_types=True)


def _split(data: bytes) -> tuple[bytes | None, dict[str, RawTensor]]:
    split = FLAX.split(io.BytesIO(data), source="m.msgpack")
    return split.layout, {
        name: RawTensor(t.dtype, t.shape, bytes(t.data)) for name, t in split.tensors
    }


def _join(layout: bytes | None, tensors: dict[str, RawTensor]) -> bytes:
    out = io.BytesIO()
    specs = {n: TensorSpec(t.dtype, t.shape) for n, t in tensors.items()}
    FLAX.join(out, layout, specs, lambda names: (tensors[n] for n in names), source="m.msgpack")
    return out.getvalue()


def test_a_file_flax_wrote_reads_with_its_values_and_round_trips_byte_for_byte():
    data = FIXTURE.read_bytes()
    assert sniff_format(data[:64], io.BytesIO(data)) is get_format("flax")
    layout, tensors = _split(data)
    # The values make_fixtures.py drew, drawn again in the same order.
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((16, 8)).astype(np.float32)
    attention = rng.standard_normal((8, 8))
    mlp = rng.standard_normal((8, 32))
    np.testing.assert_array_equal(tensors["params/embed/embedding"].to_numpy(), embedding)
    np.testing.assert_array_equal(tensors["params/layers_0/mlp/kernel"].to_numpy(), mlp)
    bf16 = tensors["params/layers_0/attention/kernel"]
    assert (bf16.dtype, bf16.shape) == ("BF16", (8, 8))
    widened = (np.frombuffer(bf16.data, "<u2").astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_allclose(widened.reshape(8, 8), attention, rtol=1 / 128)
    assert tensors["params/layers_0/mlp/mask"].to_numpy().tolist() == [True] * 4
    assert tensors["scale"].shape == () and tensors["scale"].to_numpy() == np.float32(0.5)
    assert tensors["wide/k16"].to_numpy().tolist() == [16, 16]
    assert FLAX.layout_values(layout, source="m") == {"step": "7", "name": "'tiny'"}
    assert _join(layout, tensors) == data


@pytest.mark.parametrize("n", [0, 1, 3, 60, 70, 16_000, 16_400])
def test_fresh_files_are_the_bytes_flax_writes_for_the_same_tree(n):
    # Sizes cross msgpack's fixext16, ext8, ext16 and ext32 encodings and bin8/16/32.
    tree = {
        "params": {
            "a": {"kernel": np.arange(n, dtype=np.float32)},
            "b": np.ones((2, 3), np.int8),
        }
    }
    expected = _flax_bytes(tree)
    layout, tensors = _split(expected)
    assert _join(layout, tensors) == expected
    assert _join(None, tensors) == expected
    assert (
        FLAX.canonical_layout({k: TensorSpec(t.dtype, t.shape) for k, t in tensors.items()})
        == layout
    )


def test_a_changed_shape_gets_new_headers_and_the_rest_keeps_its_bytes():
    data = _flax_bytes({"w": np.zeros((2, 2), np.float32), "step": 3, "b": np.ones(3, np.float32)})
    layout, tensors = _split(data)
    tensors["w"] = RawTensor.from_numpy(np.arange(300, dtype=np.float32).reshape(10, 30))
    written = _join(layout, tensors)
    assert written == _flax_bytes(
        {"w": tensors["w"].to_numpy(), "step": 3, "b": np.ones(3, np.float32)}
    )


def test_names_that_do_not_nest_are_written_flat():
    tensors = {n: RawTensor.from_numpy(np.zeros(1, np.float32)) for n in ("a", "a/b")}
    data = _join(None, tensors)
    assert list(msgpack.unpackb(data, strict_map_key=False)) == ["a", "a/b"]
    assert _split(data)[1].keys() == tensors.keys()


def test_every_flax_dtype_reads_as_its_safetensors_name():
    names = [n for n in FLAX_DTYPES if hasattr(np, n)]
    tree = {n: np.zeros(2, getattr(np, n)) for n in names}
    _, tensors = _split(_flax_bytes(tree))
    assert {n: t.dtype for n, t in tensors.items()} == {n: FLAX_DTYPES[n] for n in names}


def test_other_formats_are_not_taken_for_flax():
    for data in (
        b"PK\x03\x04rest",
        struct.pack("<Q", 2) + b"{}",
        b'{"a": 1}',
        msgpack.packb({"a": 1}),
    ):
        assert not FLAX.sniff(data[:64], io.BytesIO(data))


def _bad(data: bytes) -> str:
    with pytest.raises(CheckpointError) as info:
        _split(data)
    message = str(info.value)
    assert message.startswith("m.msgpack: not a readable flax msgpack checkpoint: ")
    return message.split(": ", 2)[2]


def test_hostile_and_broken_files_are_refused_with_one_line():
    good = _flax_bytes({"p": {"w": np.zeros((4, 4), np.float32)}})
    assert _bad(good[:-5]).startswith("truncated")
    assert _bad(good + b"\x00") == "1 bytes follow the msgpack document"
    assert _bad(msgpack.packb([1, 2])) == "the document is not a msgpack map (a flax state dict)"
    deep: object = {"w": np.zeros(1, np.float32)}
    for _ in range(80):
        deep = {"x": deep}
    assert _bad(_flax_bytes(deep)) == "nested deeper than 64 levels"
    lying = msgpack.packb(((1 << 40, 1 << 40), "float32", b"\0" * 4), use_bin_type=True)
    assert "is larger than" in _bad(msgpack.packb({"w": msgpack.ExtType(1, lying)}))
    short = msgpack.packb(((4,), "float32", b"\0" * 4), use_bin_type=True)
    assert _bad(msgpack.packb({"w": msgpack.ExtType(1, short)})) == (
        "parameter 'w': float32 [4] needs 16 bytes, the array holds 4"
    )
    odd = msgpack.packb(((1,), "float128", b"\0" * 16), use_bin_type=True)
    assert "dtype 'float128' is not one git-theta stores" in _bad(
        msgpack.packb({"w": msgpack.ExtType(1, odd)})
    )
    twice = _flax_bytes({"a/b": np.zeros(1, np.int8), "a": {"b": np.zeros(1, np.int8)}})
    assert _bad(twice) == "parameter 'a/b' appears twice"


def test_a_malformed_stored_layout_is_refused():
    layout, tensors = _split(_flax_bytes({"w": np.zeros(2, np.float32)}))
    doc = msgpack.unpackb(layout)
    for broken in (
        b"not msgpack",
        msgpack.packb({**doc, "arrays": [["w", 99, doc["arrays"][0][2]]]}),
        msgpack.packb({**doc, "arrays": [["w", 0, b"\xc7\x05\x01junk"]]}),
    ):
        with pytest.raises(CheckpointError, match="^x: the stored flax layout is malformed$"):
            FLAX.join(
                io.BytesIO(), broken, {"w": TensorSpec("F32", (2,))}, lambda n: iter(()), source="x"
            )
    with pytest.raises(CheckpointError, match="newer than this git-theta reads"):
        FLAX.layout_values(msgpack.packb({**doc, "version": 9}), source="x")


@pytest.mark.skipif(importlib.util.find_spec("flax") is None, reason="flax is not installed")
def test_flax_reads_what_we_write():  # pragma: no cover - only where flax is installed
    """Run where flax is installed (flax 0.12.8 + jax 0.10.2 in a virtualenv: 755 MB, too much
    for CI): flax restores every dtype we write, with a layout and without one."""
    import jax.numpy as jnp
    from flax import serialization

    rng = np.random.default_rng(1)
    state = {
        "params": {
            "a": {
                "kernel": rng.standard_normal((3, 4)).astype(np.float32),
                "bias": np.zeros(4, np.float16),
            },
            "b": jnp.asarray(rng.standard_normal((2, 2)), dtype=jnp.bfloat16),
            "c": np.arange(5, dtype=np.int64),
            "m": np.ones(3, bool),
        }
    }
    written = serialization.to_bytes(state)
    layout, tensors = _split(written)
    assert _join(layout, tensors) == written
    restored = serialization.msgpack_restore(_join(None, tensors))
    for group, name in (("a", "kernel"), ("a", "bias"), (None, "b"), (None, "c"), (None, "m")):
        want = state["params"][group][name] if group else state["params"][name]
        got = restored["params"][group][name] if group else restored["params"][name]
        assert np.asarray(got).dtype == np.asarray(want).dtype, name
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=name)
