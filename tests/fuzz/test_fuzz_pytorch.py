"""Mutated PyTorch checkpoints: clean stores them so that torch.load gives back the same
structure and tensor bytes, or refuses them in one line. Pickles are never executed
(weights_only), whatever the bytes say."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from git_theta.errors import GitThetaError
from testing.fuzzing import assert_one_line, examples, time_limit
from testing.mutations import Blob, mutated

torch = pytest.importorskip("torch")

PATH = "model.pt"
DTYPES = ["float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "int8", "bool"]


@st.composite
def tensors(draw: st.DrawFn) -> Any:
    dtype = getattr(torch, draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    raw = torch.from_numpy(rng.integers(0, 256, n, dtype=np.uint8))
    tensor = raw.view(dtype).reshape(shape) if n else torch.empty(shape, dtype=dtype)
    if dtype is torch.bool:
        tensor = (raw % 2).bool().reshape(shape)
    if draw(st.booleans()):
        tensor = torch.nn.Parameter(tensor, requires_grad=tensor.is_floating_point())
    return tensor


_leaves = st.one_of(tensors(), st.integers(-5, 5), st.text(max_size=4), st.none(), st.floats(0, 1))
structures = st.dictionaries(
    st.text(min_size=1, max_size=4),
    st.recursive(
        _leaves,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=6,
    ),
    min_size=1,
    max_size=4,
)


def _save(obj: Any, legacy: bool) -> bytes:
    out = io.BytesIO()
    torch.save(obj, out, _use_new_zipfile_serialization=not legacy)
    return out.getvalue()


def _with_member(archive: bytes, suffix: str, mutate) -> bytes:
    """`archive` with the member ending in `suffix` passed through `mutate`, CRCs recomputed
    (so the bytes reach the unpickler instead of failing the CRC check)."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, mutate(data) if info.filename.endswith(suffix) else data)
    return out.getvalue()


@st.composite
def pt_files(draw: st.DrawFn) -> Blob:
    legacy = draw(st.booleans())
    content = _save(draw(structures), legacy)
    kind = draw(st.sampled_from(["valid", "bytes", "pickle"]))
    if kind == "bytes" or (kind == "pickle" and legacy):
        content = draw(mutated(content))
    elif kind == "pickle":
        pickled = zipfile.ZipFile(io.BytesIO(content))
        name = next(n for n in pickled.namelist() if n.endswith("data.pkl"))
        damaged = draw(mutated(pickled.read(name)))
        content = _with_member(content, "data.pkl", lambda _: damaged)
    return Blob(content)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and type(a) is type(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.requires_grad == b.requires_grad
            and bytes(a.detach().contiguous().view(-1).view(torch.uint8).numpy())
            == bytes(b.detach().contiguous().view(-1).view(torch.uint8).numpy())
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)


def _load(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=True)


def check_pt(sandbox, content: bytes) -> None:
    with time_limit(), sandbox.audit() as audit, sandbox.session() as session:
        try:
            meta = session.clean(io.BytesIO(content), PATH)
        except GitThetaError as exc:
            assert_one_line(exc)
            return
        out = io.BytesIO()
        session.smudge(meta, PATH, out)
    assert not audit.forbidden()
    assert _same(_load(out.getvalue()), _load(content)), "the round trip changed the checkpoint"


# torch.load and torch.save cost ~0.1 s a case on a loaded machine: fewer cases by default.
@settings(max_examples=examples(0.4))
@given(content=pt_files())
def test_pt_round_trips_or_is_refused_in_one_line(sandbox, content):
    check_pt(sandbox, content)
