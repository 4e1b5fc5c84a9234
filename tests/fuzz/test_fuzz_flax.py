"""Mutated Flax msgpack checkpoints: read and written back byte for byte, or refused in one
line, without sizing memory from a header that lies."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from git_theta.errors import CheckpointError
from git_theta.formats.base import TensorSpec
from git_theta.formats.flax import FlaxFormat
from testing.fuzzing import assert_one_line, memory_cap, time_limit
from testing.mutations import Blob, mutated

FIXTURE = (Path(__file__).parents[1] / "fixtures" / "flax" / "tiny.msgpack").read_bytes()
MEMORY_CAP = 256 * 1024 * 1024


@st.composite
def flax_files(draw: st.DrawFn) -> Blob:
    return draw(mutated(FIXTURE))


@given(content=flax_files())
def test_flax_round_trips_or_is_refused_in_one_line(content):
    fmt = FlaxFormat()
    data = bytes(content)
    with time_limit(), memory_cap(MEMORY_CAP):
        try:
            split = fmt.split(io.BytesIO(data), source="m.msgpack")
            tensors = {name: t for name, t in split.tensors}
        except CheckpointError as exc:
            assert_one_line(exc)
            assert str(exc).startswith("m.msgpack: ")
            return
        out = io.BytesIO()
        specs = {n: TensorSpec(t.dtype, t.shape) for n, t in tensors.items()}
        fmt.join(out, split.layout, specs, lambda names: (tensors[n] for n in names), source="x")
    assert out.getvalue() == data
