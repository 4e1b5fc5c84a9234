"""Flax msgpack checkpoints through real git: flax's own bytes back on checkout, one changed
tensor stored as one new object."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np

from git_theta import metadata as md
from git_theta.formats.base import TensorSpec
from git_theta.formats.flax import FlaxFormat
from git_theta.tensor import RawTensor
from testing.gitenv import store_objects

FIXTURE = Path(__file__).parents[1] / "fixtures" / "flax" / "tiny.msgpack"


def test_a_flax_checkpoint_round_trips_through_git_byte_for_byte(gitenv):
    repo = gitenv.init_repo(track=("*.msgpack",))
    model = repo / "flax_model.msgpack"
    shutil.copy(FIXTURE, model)
    gitenv.git("add", "flax_model.msgpack", cwd=repo)
    gitenv.git("commit", "-q", "-m", "flax", cwd=repo)
    meta = md.decode(gitenv.git("show", "HEAD:flax_model.msgpack", cwd=repo).encode())
    assert meta.format == "flax" and "params/layers_0/mlp/kernel" in meta.params
    before = store_objects(repo)

    # Change one tensor, written back the way flax writes it (the layout keeps the rest).
    fmt = FlaxFormat()
    split = fmt.split(io.BytesIO(FIXTURE.read_bytes()), source="fixture")
    tensors = {n: RawTensor(t.dtype, t.shape, bytes(t.data)) for n, t in split.tensors}
    ids = tensors["params/ids"].to_numpy() + 1
    tensors["params/ids"] = RawTensor.from_numpy(ids.astype(np.int32))
    out = io.BytesIO()
    specs = {n: TensorSpec(t.dtype, t.shape) for n, t in tensors.items()}
    fmt.join(out, split.layout, specs, lambda names: (tensors[n] for n in names), source="x")
    model.write_bytes(out.getvalue())
    stat = gitenv.git("diff", "--stat", cwd=repo)
    assert "flax_model.msgpack" in stat
    gitenv.git("commit", "-q", "-am", "ids + 1", cwd=repo)
    assert len(store_objects(repo) - before) == 1

    gitenv.git("checkout", "-q", "HEAD~1", cwd=repo)
    assert model.read_bytes() == FIXTURE.read_bytes()
    gitenv.git("checkout", "-q", "-", cwd=repo)
    assert model.read_bytes() == out.getvalue()
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
