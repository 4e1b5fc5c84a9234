"""add, commit and check out real checkpoints through real git, byte for byte."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import ALL_DTYPES, random_params, write_safetensors
from testing.gitenv import store_objects


def test_git_stores_small_metadata_and_checkout_is_byte_identical(scratch):
    v1 = scratch.commit("v1")
    stored = scratch.git("show", "HEAD:model.safetensors").encode()
    meta = md.decode(stored)
    assert meta.format == "safetensors"
    assert sorted(meta.params) == sorted(scratch.params)
    assert len(stored) < len(v1)
    scratch.commit("v2", scratch.edited("norm.scale"))
    scratch.git("checkout", "-q", "HEAD~1")
    assert scratch.path.read_bytes() == v1
    assert scratch.git("status", "--porcelain") == ""


@pytest.mark.parametrize("dtype", sorted(ALL_DTYPES))
def test_every_dtype_round_trips_byte_identical(scratch, dtype):
    params = random_params({"t": (dtype, (3, 5)), "scalar": (dtype, ()), "empty": (dtype, (0, 4))})
    data = scratch.commit(dtype, params)
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == data


def test_header_order_padding_and_metadata_are_kept(scratch):
    params = random_params({"z": ("F32", (4,)), "a": ("F16", (2, 2)), "m": ("I8", (7,))})
    data = write_safetensors(scratch.path, params, metadata={"b": "2", "a": "1"}, pad=False)
    scratch.git("add", "model.safetensors")
    scratch.git("commit", "-q", "-m", "odd header")
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == data


def test_commit_with_k_of_n_tensors_changed_writes_k_objects(scratch):
    scratch.commit("v1")
    before = store_objects(scratch.repo)
    scratch.commit("v2", scratch.edited("embed.weight", "layers.1.attn.weight"))
    assert len(store_objects(scratch.repo) - before) == 2


def test_a_tiny_edit_is_recorded(scratch):
    scratch.commit("v1")
    params = dict(scratch.params)
    dtype, array = params["norm.scale"]
    changed = array.copy()
    changed[0] = np.nextafter(changed[0], np.float32(1))  # one ulp, ~1e-9
    params["norm.scale"] = (dtype, changed)
    scratch.commit("tiny", params)
    old = md.decode(scratch.git("show", "HEAD~1:model.safetensors").encode())
    new = md.decode(scratch.git("show", "HEAD:model.safetensors").encode())
    assert old.params["norm.scale"].hash != new.params["norm.scale"].hash
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == write_safetensors(
        scratch.repo / "expected", params, metadata={"format": "pt"}
    )


def test_status_after_touch_writes_nothing(scratch):
    scratch.commit("v1")
    objects = scratch.repo / ".git" / "theta" / "objects"
    before = {p: p.stat().st_mtime_ns for p in objects.rglob("*")}
    tmp_before = set((scratch.repo / ".git" / "theta" / "tmp").iterdir())
    scratch.path.touch()
    assert scratch.git("status", "--porcelain") == ""
    assert {p: p.stat().st_mtime_ns for p in objects.rglob("*")} == before
    assert set((scratch.repo / ".git" / "theta" / "tmp").iterdir()) == tmp_before


def test_ls_files_lists_checkpoints_and_params(scratch):
    scratch.commit("v1")
    out = scratch.env.theta("ls-files", "--params", cwd=scratch.repo).stdout.decode()
    lines = out.splitlines()
    assert lines[0].startswith("model.safetensors\tsafetensors\t7 params\t")
    assert lines[1] == "  parameter\tdtype\tshape\tbytes\tupdate\tstored"  # column headers
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in lines[2:]}
    meta = json.loads(scratch.git("show", "HEAD:model.safetensors"))["params"]
    embed = meta["embed.weight"]["object"]["size"]
    assert rows["  embed.weight"] == ["F32", "64x32", "8192", "dense", str(embed)]
    assert rows["  step"][:4] == ["I64", "scalar", "8", "dense"]
    head = scratch.env.theta("ls-files", "HEAD", cwd=scratch.repo).stdout.decode()
    assert head.splitlines() == [lines[0]]


def test_empty_checkpoint_file_round_trips(scratch):
    scratch.path.write_bytes(b"")
    scratch.git("add", "model.safetensors")
    scratch.git("commit", "-q", "-m", "empty")
    assert scratch.git("show", "HEAD:model.safetensors") == ""


def test_checkpoint_in_a_subdirectory_with_spaces(gitenv):
    repo = gitenv.init_repo()
    folder = repo / "my models"
    folder.mkdir()
    gitenv.theta("track", "*.safetensors", cwd=folder)
    path = folder / "fine tuned.safetensors"
    params = random_params({"w": ("F32", (8, 8)), "b": ("BF16", (8,))})
    v1 = write_safetensors(path, params)
    gitenv.git("add", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", "v1", cwd=repo)
    assert md.decode(gitenv.git("show", "HEAD:my models/fine tuned.safetensors", cwd=repo).encode())
    params["w"] = ("F32", params["w"][1] + np.float32(1))
    write_safetensors(path, params)
    gitenv.git("commit", "-q", "-am", "v2", cwd=repo)
    gitenv.git("checkout", "-q", "HEAD~1", cwd=repo)
    assert path.read_bytes() == v1
    listed = gitenv.theta("ls-files", cwd=repo).stdout.decode()
    assert listed.startswith("my models/fine tuned.safetensors\tsafetensors\t2 params")


def test_tensors_spanning_several_pages_round_trip_and_store_updates(scratch):
    # The clean filter reads tensors in 4 MiB pages (git_theta/pages.py): tensors that end
    # inside a page, fill one exactly, or span several must come back byte for byte, dense
    # or stored as an update (which needs the pages joined).
    params = random_params(
        {
            "big.weight": ("F32", (2_500_001,)),
            "page.bytes": ("U8", (4 * 1024 * 1024,)),
            "half.weight": ("BF16", (1_500_000,)),
            "tail": ("F16", (3,)),
        }
    )
    v1 = scratch.commit("v1", params)
    edited = dict(params)
    dtype, array = edited["big.weight"]
    changed = array.copy()
    changed[-5:] += 1.0  # in the last page only
    edited["big.weight"] = (dtype, changed)
    v2 = scratch.write(edited)
    scratch.env.theta("add", "model.safetensors", "--update-type", "sparse", cwd=scratch.repo)
    scratch.git("commit", "-q", "-m", "v2")
    meta = md.decode(scratch.git("show", "HEAD:model.safetensors").encode())
    assert meta.params["big.weight"].update_type == "sparse"
    v3_params = dict(edited)
    dtype, array = v3_params["half.weight"]
    v3_params["half.weight"] = (dtype, array[::-1].copy())
    v3 = scratch.commit("v3", v3_params)  # dense, page by page
    for rev, data in (("HEAD~2", v1), ("HEAD~1", v2), ("HEAD", v3)):
        scratch.path.unlink()
        scratch.git("checkout", "-q", rev, "--", "model.safetensors")
        assert scratch.path.read_bytes() == data, rev
    assert scratch.git("status", "--porcelain") == ""


def _packed_file(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    """A safetensors file whose tensors may be sub-byte (shape in elements, data in bytes)."""
    header, offset = {}, 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(d for _, _, d in tensors.values())


def test_packed_sub_byte_dtypes_round_trip_and_diff(scratch):
    # F4 holds 2 elements a byte, F6 4 elements in 3 bytes: git-theta keeps their bytes.
    rng = np.random.default_rng(0)
    tensors = {
        "f4": ("F4", [6, 4], rng.bytes(12)),
        "f6a": ("F6_E2M3", [8], rng.bytes(6)),
        "f6b": ("F6_E3M2", [2, 4], rng.bytes(6)),
        "f32": ("F32", [3], rng.bytes(12)),
    }
    v1 = _packed_file(tensors)
    scratch.path.write_bytes(v1)
    scratch.git("add", "model.safetensors")
    scratch.git("commit", "-q", "-m", "packed")
    listed = scratch.env.run(
        ["git", "theta", "ls-files", "--params"], cwd=scratch.repo
    ).stdout.decode()
    rows = [line.rsplit("\t", 1)[0] for line in listed.splitlines()]
    assert "  f4\tF4\t6x4\t12\tdense" in rows
    assert "  f6a\tF6_E2M3\t8\t6\tdense" in rows
    changed = dict(tensors, f4=("F4", [6, 4], bytes(12)))
    v2 = _packed_file(changed)
    scratch.path.write_bytes(v2)
    scratch.git("add", "model.safetensors")
    scratch.git("commit", "-q", "-m", "f4 changed")
    diff = scratch.env.run(["git", "theta", "diff", "HEAD~1", "HEAD"], cwd=scratch.repo)
    out = diff.stdout.decode()
    assert "f4" in out and "packed dtype: compared by hash only" in out, out
    assert "f6a" not in out
    scratch.git("checkout", "-q", "HEAD~1", "--", "model.safetensors")
    assert scratch.path.read_bytes() == v1
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == v1
    assert scratch.git("status", "--porcelain").splitlines() == ["M  model.safetensors"]


def test_packed_elements_that_do_not_fill_bytes_are_refused(scratch):
    data = _packed_file({"f4": ("F4", [3], b"\x12\x34")})
    scratch.path.write_bytes(data)
    proc = scratch.env.run(["git", "add", "model.safetensors"], cwd=scratch.repo, check=False)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.decode().splitlines() if x.startswith("git-theta:")]
    assert lines == [
        "git-theta: clean failed: model.safetensors: parameter 'f4': 3 F4 elements are 12 "
        "bits, not whole bytes"
    ]


def test_packed_conflict_is_not_averaged_and_takes_a_side(scratch):
    rng = np.random.default_rng(1)
    base = _packed_file({"f4": ("F4", [4, 4], rng.bytes(8))})
    ours, theirs = (_packed_file({"f4": ("F4", [4, 4], rng.bytes(8))}) for _ in range(2))
    scratch.path.write_bytes(base)
    scratch.git("add", "model.safetensors")
    scratch.git("commit", "-q", "-m", "base")
    scratch.git("checkout", "-q", "-b", "theirs")
    scratch.path.write_bytes(theirs)
    scratch.git("commit", "-q", "-am", "theirs")
    scratch.git("checkout", "-q", "-")
    scratch.path.write_bytes(ours)
    scratch.git("commit", "-q", "-am", "ours")
    assert scratch.env.run(["git", "merge", "theirs"], cwd=scratch.repo, check=False).returncode
    average = scratch.env.run(
        ["git", "theta", "resolve", "model.safetensors", "--strategy", "average"],
        cwd=scratch.repo,
        check=False,
    )
    assert average.returncode != 0
    assert "F4 values are not merged numerically; pick a side" in average.stderr.decode()
    scratch.env.run(
        ["git", "theta", "resolve", "model.safetensors", "--strategy", "take-theirs"],
        cwd=scratch.repo,
    )
    scratch.git("commit", "-q", "--no-edit")
    assert scratch.path.read_bytes() == theirs
