"""Bad input: a one-line error naming the file (and parameter), a failing git command, and
nothing lost or half-written."""

from __future__ import annotations

import hashlib
import io
import json
import struct

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import random_params
from testing.gitenv import store_objects


def _stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.decode().splitlines() if line.startswith("git-theta:")]


def _add_fails(scratch, content: bytes) -> str:
    """Write `content` as the checkpoint, run `git add`, assert it failed cleanly; return the
    git-theta error line."""
    index_before = scratch.git("ls-files", "-s")
    objects_before = store_objects(scratch.repo)
    scratch.path.write_bytes(content)
    proc = scratch.env.run(["git", "add", "model.safetensors"], cwd=scratch.repo, check=False)
    assert proc.returncode != 0
    assert b"Traceback" not in proc.stderr
    lines = _stderr_lines(proc)
    assert len(lines) == 1, proc.stderr.decode()
    assert scratch.git("ls-files", "-s") == index_before
    assert scratch.path.read_bytes() == content
    # Objects the failed add wrote stay (another work tree may have committed against them;
    # prune reclaims them when nothing does), but every one is whole and nothing was lost.
    assert store_objects(scratch.repo) >= objects_before
    assert_store_whole(scratch.repo)
    return lines[0]


def assert_store_whole(repo) -> None:
    """No temp file left in the store, and every object's bytes hash to its name."""
    tmp = repo / ".git" / "theta" / "tmp"
    assert not tmp.exists() or not any(p.name.startswith("object-") for p in tmp.iterdir())
    for path in (repo / ".git" / "theta" / "objects").rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


def _header(entries: dict) -> bytes:
    text = json.dumps(entries).encode()
    return struct.pack("<Q", len(text)) + text


def test_truncated_checkpoint(scratch):
    data = scratch.commit("v1")
    line = _add_fails(scratch, data[:-10])
    assert line.startswith("git-theta: clean failed: model.safetensors: truncated checkpoint:")
    assert "parameter" in line


def test_truncated_first_version_leaves_whole_unreferenced_objects_and_no_index_entry(scratch):
    # Nothing committed yet: every tensor read before the truncation is new, and its object
    # is written once its batch (up to 1 MiB of tensors) goes to a worker. The failed add
    # leaves them (whole; `_add_fails` checks), referenced by nothing: the path never entered
    # the index. A 2 MiB first tensor makes a batch of its own, written before the end.
    big = random_params({"big.weight": ("F32", (512, 1024))}, seed=1)
    data = scratch.write({**big, **scratch.params})
    scratch.path.unlink()
    line = _add_fails(scratch, data[:-10])
    assert "truncated checkpoint" in line
    assert store_objects(scratch.repo)  # written before the truncation was met
    assert scratch.git("ls-files", "model.safetensors") == ""
    scratch.path.write_bytes(data)  # the whole file adds and round-trips
    scratch.git("add", "model.safetensors")
    scratch.git("commit", "-q", "-m", "v1")
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == data


def test_header_offsets_that_leave_a_gap(scratch):
    scratch.commit("v1")
    content = _header(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
        }
    ) + bytes(24)
    line = _add_fails(scratch, content)
    assert line == (
        "git-theta: clean failed: model.safetensors: parameter 'b': data_offsets start at 16, "
        "expected 8 (header leaves a gap)"
    )


def test_header_size_that_lies_about_the_shape(scratch):
    scratch.commit("v1")
    content = _header({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 60]}}) + bytes(60)
    line = _add_fails(scratch, content)
    assert line == (
        "git-theta: clean failed: model.safetensors: parameter 'w': data_offsets [0, 60] do "
        "not hold F32 [4, 4] (64 bytes)"
    )


def test_header_length_beyond_the_file(scratch):
    scratch.commit("v1")
    line = _add_fails(scratch, struct.pack("<Q", 5000) + b'{"a": 1}')
    assert line == (
        "git-theta: clean failed: model.safetensors: truncated checkpoint: the safetensors "
        "header needs 5000 bytes, the file ends after 8"
    )


def test_unknown_format(scratch):
    scratch.commit("v1")
    line = _add_fails(scratch, b"this is not a checkpoint\n" * 10)
    assert line.startswith(
        "git-theta: clean failed: model.safetensors: not a checkpoint format git-theta reads"
    )


def test_truncated_zip_archive_says_so(scratch):
    # Without the zip directory at its end, nothing tells a .pt from an .npz: the error says
    # what is wrong rather than "unknown format".
    buf = io.BytesIO()
    np.savez(buf, w=np.ones(1000))
    data = buf.getvalue()
    line = _add_fails(scratch, data[: len(data) // 2])
    assert line == (
        "git-theta: clean failed: model.safetensors: a zip archive that cannot be read "
        "(truncated or corrupt), so neither a PyTorch checkpoint nor an .npz git-theta can read"
    )


def test_format_override_naming_an_unknown_format(scratch):
    scratch.commit("v1")
    with (scratch.repo / ".gitattributes").open("a") as f:
        f.write("model.safetensors theta-format=onnx\n")
    line = _add_fails(scratch, scratch.path.read_bytes() + b"")
    assert line == (
        "git-theta: clean failed: model.safetensors: unknown checkpoint format 'onnx'; "
        "known formats: flax, npz, pytorch, safetensors"
    )


def _object_path(scratch, param: str):
    meta = md.decode(scratch.git("show", "HEAD~1:model.safetensors").encode())
    oid = meta.params[param].object.oid
    return scratch.repo / ".git" / "theta" / "objects" / oid[:2] / oid[2:4] / oid


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_checkout_with_a_damaged_object_fails_and_the_index_restores_it(scratch, damage):
    scratch.commit("v1")
    v2 = scratch.commit("v2", scratch.edited("embed.weight"))
    obj = _object_path(scratch, "embed.weight")
    if damage == "missing":
        obj.unlink()
    else:
        blob = bytearray(obj.read_bytes())
        blob[-1] ^= 0xFF
        obj.write_bytes(bytes(blob))
    proc = scratch.env.run(
        ["git", "checkout", "HEAD~1", "--", "model.safetensors"], cwd=scratch.repo, check=False
    )
    assert proc.returncode != 0
    assert b"Traceback" not in proc.stderr
    lines = _stderr_lines(proc)
    assert len(lines) == 1, proc.stderr.decode()
    assert lines[0].startswith("git-theta: smudge failed: model.safetensors: ")
    assert "embed.weight" in lines[0]
    assert ("missing" if damage == "missing" else "corrupt") in lines[0]
    # Git unlinks the old file before it runs any smudge filter, so the path is empty rather
    # than half-written; the index still records v2, and checking it out restores it whole.
    assert not scratch.path.exists()
    assert scratch.git("diff", "--cached", "--name-only") == ""
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == v2


def test_metadata_with_an_unknown_version_is_refused_at_checkout(scratch):
    scratch.commit("v1")
    text = scratch.git("show", "HEAD:model.safetensors").replace(
        '"git_theta": 1', '"git_theta": 99'
    )
    blob = scratch.env.git("hash-object", "-w", "--stdin", cwd=scratch.repo, input=text.encode())
    scratch.env.git(
        "update-index", "--cacheinfo", f"100644,{blob.strip()},model.safetensors", cwd=scratch.repo
    )
    scratch.path.unlink()
    proc = scratch.env.run(
        ["git", "checkout", "--", "model.safetensors"], cwd=scratch.repo, check=False
    )
    assert proc.returncode != 0
    (line,) = _stderr_lines(proc)
    assert "metadata version 99 is not supported" in line
    assert not scratch.path.exists()
