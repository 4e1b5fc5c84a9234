"""Mutated .npz archives: clean stores them so that every member comes back as np.save wrote
it (dtype with its byte order, memory order, shape, bytes), or refuses them in one line,
without sizing memory from a header that lies."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta.errors import GitThetaError
from git_theta.formats.npz import NpzFormat
from testing.fuzzing import assert_one_line, memory_cap, time_limit
from testing.mutations import Blob, hostile_ints, mutated

PATH = "arrays.npz"
MEMORY_CAP = 256 * 1024 * 1024
DTYPES = ["<f4", ">f4", "<f8", ">f8", "<f2", "<i4", ">i4", ">i8", "<u2", "|u1", "|i1", "|b1", "<c8"]


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = rng.integers(0, 256, int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    array = raw.view(dtype).reshape(shape) if raw.size else np.zeros(shape, dtype)
    if dtype.kind == "b":
        array = raw.astype(bool).reshape(shape)
    return np.asfortranarray(array) if draw(st.booleans()) else array


def _savez(members: dict[str, np.ndarray], compressed: bool) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **members)
    return out.getvalue()


def _with_member(archive: bytes, name: str, data: bytes) -> bytes:
    """`archive` with member `name` replaced by `data` (a valid zip: CRCs recomputed)."""
    src = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, data if info.filename == name else src.read(info))
    return out.getvalue()


def _npy(header: str, payload: bytes) -> bytes:
    text = header.encode("latin-1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload


_hostile_headers = st.one_of(
    st.builds(
        lambda descr, fortran, shape: repr(
            {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}
        ),
        st.sampled_from(["<f4", ">i4", "|O", "<U4", "|V8", "[('a', '<i4')]", "<f3", "x"]),
        st.sampled_from([False, True, 1, "no"]),
        st.lists(hostile_ints.filter(lambda n: abs(n) < 2**200), max_size=3),
    ),
    st.sampled_from(
        [
            "{",
            "{'descr': '<f4'}",
            "(((((((((",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2**62, 2**62), }",
        ]
    ),
)


@st.composite
def npz_files(draw: st.DrawFn) -> Blob:
    names = draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True))
    members = {n: draw(arrays()) for n in names}
    archive = _savez(members, draw(st.booleans()))
    kind = draw(st.sampled_from(["valid", "bytes", "header", "npy-bytes"]))
    member = draw(st.sampled_from(names)) + ".npy"
    if kind == "bytes":
        archive = draw(mutated(archive))
    elif kind == "header":
        archive = _with_member(archive, member, _npy(draw(_hostile_headers), bytes(16)))
    elif kind == "npy-bytes":
        npy = zipfile.ZipFile(io.BytesIO(archive)).read(member)
        archive = _with_member(archive, member, draw(mutated(npy)))
    return Blob(archive)


def _members(archive: bytes) -> list[tuple[str, str, bool, tuple[int, ...], bytes]]:
    """(name, dtype with byte order, Fortran order, shape, bytes) of each member: what
    np.save records in a .npy header, and the data."""
    out = []
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        for info in z.infolist():
            with z.open(info) as f:
                a = np.lib.format.read_array(f, allow_pickle=False)
            fortran = a.flags.f_contiguous and not a.flags.c_contiguous
            out.append((info.filename, a.dtype.str, fortran, a.shape, a.tobytes("A")))
    return out


def check_npz(sandbox, content: bytes) -> None:
    # The format alone, under a memory cap (it starts no threads): a lying header must not
    # size an allocation.
    with time_limit(), memory_cap(MEMORY_CAP):
        try:
            split = NpzFormat().split(io.BytesIO(content), source=PATH)
            for _ in split.tensors:
                pass
        except GitThetaError as exc:
            assert_one_line(exc)
            return
    with time_limit(), sandbox.audit() as audit, sandbox.session() as session:
        try:
            meta = session.clean(io.BytesIO(content), PATH)
        except GitThetaError as exc:
            assert_one_line(exc)
            return
        out = io.BytesIO()
        session.smudge(meta, PATH, out)
    assert not audit.forbidden()
    assert _members(out.getvalue()) == _members(content)


@given(content=npz_files())
def test_npz_round_trips_as_saved_or_is_refused_in_one_line(sandbox, content):
    check_npz(sandbox, content)


@pytest.mark.parametrize(
    "content",
    [
        _savez({"w": np.arange(6, dtype=">i4").reshape(2, 3)}, False),
        _savez({"w": np.arange(6, dtype=">f8")}, True),
        _savez({"w": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3))}, False),
        _with_member(
            _savez({"w": np.zeros(2, "<f4")}, False),
            "w.npy",
            _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2**41,), }", bytes(16)),
        ),
        _with_member(_savez({"w": np.zeros(2, "<f4")}, False), "w.npy", _npy("(((((", b"")),
    ],
    ids=["big-endian-i4", "big-endian-f8", "fortran-order", "declares-8TiB", "corrupt-header"],
)
def test_known_npz_cases(sandbox, content):
    check_npz(sandbox, Blob(content))
