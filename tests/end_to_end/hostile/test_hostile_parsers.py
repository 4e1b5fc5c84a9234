"""Checkpoints and metadata that drove the parsers into RecursionError, UnicodeEncodeError,
MemoryError or a tokenizer error: one line each through real git, and a hostile previous
version never blocks adding a valid checkpoint."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import random_params, write_safetensors
from tests.end_to_end.hostile.conftest import Hostile, one_line

DEEP = 100_000  # far past Python's recursion limit


def _safetensors(header_text: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header_text)) + header_text + data


def _add_fails(hostile: Hostile, content: bytes, path: str = "model.safetensors") -> str:
    (hostile.repo / path).write_bytes(content)
    before = hostile.git("ls-files", "-s")
    line = one_line(hostile.run("git", "add", path))
    assert hostile.git("ls-files", "-s") == before  # nothing staged
    return line


def test_deeply_nested_safetensors_header(hostile):
    header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "x": ' + (
        b"[" * DEEP + b"]" * DEEP + b"}"
    )
    line = _add_fails(hostile, _safetensors(header, bytes(4)))
    assert line == (
        "git-theta: clean failed: model.safetensors: safetensors header is not valid JSON: "
        "JSON nested deeper than 64 levels"
    )


def test_lone_surrogate_in_a_tensor_name(hostile):
    header = b'{"w\\ud800": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    line = _add_fails(hostile, _safetensors(header, bytes(4)))
    assert line == (
        "git-theta: clean failed: model.safetensors: tensor name 'w\\ud800' is not valid "
        "Unicode (a lone surrogate); rename the tensor"
    )


def test_a_shape_whose_size_overflows_in_a_safetensors_header(hostile):
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 4]}}
    ).encode()
    line = _add_fails(hostile, _safetensors(header, bytes(4)))
    assert line == (
        "git-theta: clean failed: model.safetensors: parameter 'w': F32 "
        "[1099511627776, 1099511627776] is larger than 281474976710656 bytes"
    )


def _deep_metadata() -> bytes:
    return md.MAGIC + b"1, " + b"[" * DEEP + b"]" * DEEP + b"}\n"


def _surrogate_metadata(hostile: Hostile) -> bytes:
    return hostile.metadata.replace(b'"w": ', b'"w\\udc80": ', 1)


def _huge_shape_metadata(hostile: Hostile) -> bytes:
    return hostile.with_entry("w", {**hostile.entry("w"), "shape": [1 << 40, 1 << 40]})


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda h: _deep_metadata(), "JSON nested deeper than 64 levels"),
        (_surrogate_metadata, "not valid UTF-8 (or a lone surrogate)"),
        (
            _huge_shape_metadata,
            "parameter 'w': shape: F32 [1099511627776, 1099511627776] is larger than "
            "281474976710656 bytes",
        ),
    ],
    ids=["nested", "surrogate", "huge-shape"],
)
def test_hostile_metadata_checks_out_in_one_line(hostile, make, complaint):
    hostile.commit_blob(make(hostile))
    hostile.path.unlink()
    line = one_line(hostile.run("git", "checkout", "--", "model.safetensors"))
    assert line == (
        f"git-theta: smudge failed: model.safetensors: malformed git-theta metadata: {complaint}"
    )


@pytest.mark.parametrize("where", ["index", "HEAD"])
def test_a_hostile_previous_version_never_blocks_adding_a_valid_checkpoint(hostile, where):
    hostile.commit_blob(_deep_metadata())
    if where == "index":  # the blob only staged, HEAD back at the honest version
        hostile.git("reset", "-q", "--soft", "HEAD~1")
    else:  # the blob only in HEAD, nothing staged at the path
        hostile.git("rm", "-q", "--cached", "model.safetensors")
    data = write_safetensors(hostile.path, random_params({"w": ("F32", (4, 4))}, seed=3))
    result = hostile.run("git", "add", "model.safetensors")
    assert result.returncode == 0, result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    warnings = [ln for ln in result.err.splitlines() if ln.startswith("git-theta:")]
    spec = ":model.safetensors" if where == "index" else "HEAD:model.safetensors"
    assert warnings == [
        f"git-theta: warning: {spec}: malformed git-theta metadata: JSON nested deeper than "
        "64 levels; not reusing its objects"
    ]
    hostile.git("commit", "-q", "-m", "valid again")
    md.decode(hostile.git("show", "HEAD:model.safetensors").encode())
    hostile.path.unlink()
    hostile.git("checkout", "--", "model.safetensors")
    assert hostile.path.read_bytes() == data


def _npz_member(header: bytes, data: bytes) -> bytes:
    text = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("w.npy", member)
    return buf.getvalue()


@pytest.fixture
def npz_repo(hostile):
    hostile.env.theta("track", "*.npz", cwd=hostile.repo)
    return hostile


def test_an_npz_member_declaring_8_tib_is_refused_before_allocation(npz_repo):
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }"
    content = _npz_member(header, bytes(16))
    (npz_repo.repo / "m.npz").write_bytes(content)
    result = npz_repo.run("git", "add", "m.npz", measure=True)
    assert one_line(result) == (
        "git-theta: clean failed: m.npz: member 'w.npy': its header declares F64 "
        "[1099511627776] (8796093022208 bytes) but the member holds 16"
    )
    assert result.peak_kib < 200 * 1024


def test_a_corrupt_npy_header_is_one_line(npz_repo):
    # numpy's reader hands this (a Python 2 style long, then an unterminated string) to
    # tokenize, which raises TokenError.
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), } '''"
    (npz_repo.repo / "m.npz").write_bytes(_npz_member(header, bytes(16)))
    assert one_line(npz_repo.run("git", "add", "m.npz")) == (
        "git-theta: clean failed: m.npz: member 'w.npy' is not a valid .npy array: "
        ".npy header is not a dictionary"
    )


def test_npz_round_trips_keep_byte_order_and_memory_order(npz_repo):
    arrays = {
        "big_i4": (np.arange(12) - 6).astype(">i4").reshape(3, 4),
        "big_f8": np.linspace(-1, 1, 7).astype(">f8"),
        "fortran": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
        "big_fortran": np.asfortranarray(np.arange(6).astype(">i2").reshape(3, 2)),
        "plain": np.ones((2, 2), "<f4"),
    }
    written = {}
    for name, save in (("stored.npz", np.savez), ("deflated.npz", np.savez_compressed)):
        save(npz_repo.repo / name, **arrays)
        written[name] = (npz_repo.repo / name).read_bytes()
    npz_repo.git("add", *written)
    npz_repo.git("commit", "-q", "-m", "npz")
    for name in written:
        assert npz_repo.git("show", f"HEAD:{name}").startswith('{\n  "git_theta": ')
        (npz_repo.repo / name).unlink()
    npz_repo.git("checkout", "--", *written)
    for name, data in written.items():
        assert (npz_repo.repo / name).read_bytes() == data, name
        with np.load(npz_repo.repo / name) as back:
            assert back["big_i4"].dtype == np.dtype(">i4")
            assert back["fortran"].flags.f_contiguous
    assert npz_repo.git("status", "--porcelain") == ""
