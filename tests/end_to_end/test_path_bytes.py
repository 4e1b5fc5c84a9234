"""Path names are bytes: a checkpoint whose name is not UTF-8 (a Latin-1 `é`, byte 0xE9) goes
through add, commit, checkout, `git theta diff` and `git theta ls-files` byte-identical, and is
shown quoted the way git shows it (`"mod\\351l.safetensors"`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import GitEnv, store_objects

RAW_NAME = b"mod\xe9l.safetensors"
NAME = os.fsdecode(RAW_NAME)  # the same bytes, as Python names files
QUOTED = '"mod\\351l.safetensors"'  # what `git ls-files` prints (core.quotePath)

SHAPES = {"w": ("F32", (8, 4)), "b": ("F16", (4,))}


@pytest.fixture
def repo(gitenv: GitEnv) -> Path:
    return gitenv.init_repo(track=("*.safetensors",))


def _git_bytes(env: GitEnv, repo: Path, *args: str) -> bytes:
    return env.run(["git", *args], cwd=repo).stdout


def test_add_commit_checkout_round_trips_byte_identical(gitenv: GitEnv, repo: Path):
    data = write_safetensors(repo / NAME, random_params(SHAPES))
    gitenv.git("add", NAME, cwd=repo)
    gitenv.git("commit", "-q", "-m", "v1", cwd=repo)

    # Git has the name as the same bytes, and metadata under it, not the checkpoint.
    assert _git_bytes(gitenv, repo, "ls-files", "-z").split(b"\0") == [
        b".gitattributes",
        RAW_NAME,
        b"",
    ]
    blob = _git_bytes(gitenv, repo, "cat-file", "blob", ":" + NAME)
    meta = md.decode(blob)
    assert sorted(meta.params) == ["b", "w"]
    assert {ref.oid for ref in meta.objects()} <= store_objects(repo)

    (repo / NAME).unlink()
    gitenv.git("checkout", "--", NAME, cwd=repo)
    assert (repo / NAME).read_bytes() == data
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""


def test_ls_files_and_diff_show_the_name_quoted_as_git_does(gitenv: GitEnv, repo: Path):
    params = random_params(SHAPES)
    write_safetensors(repo / NAME, params)
    gitenv.git("add", NAME, cwd=repo)
    gitenv.git("commit", "-q", "-m", "v1", cwd=repo)
    assert gitenv.git("ls-files", cwd=repo).splitlines() == [".gitattributes", QUOTED]

    listed = gitenv.theta("ls-files", cwd=repo)
    assert listed.stderr == b""
    assert listed.stdout.decode("ascii").startswith(f"{QUOTED}\tsafetensors\t2 params\t")

    dtype, w = params["w"]
    write_safetensors(repo / NAME, {**params, "w": (dtype, w + np.float32(1))})
    shown = gitenv.theta("diff", cwd=repo)
    assert shown.stderr == b""
    lines = shown.stdout.decode("ascii").splitlines()
    assert lines[0] == 'diff --git-theta "a/mod\\351l.safetensors" "b/mod\\351l.safetensors"'
    assert lines[1].startswith(f"{QUOTED}: 1 modified, 1 unchanged (2 -> 2 params")
    assert any(line.split()[:2] == ["modified", "w"] for line in lines[2:])


def test_an_error_on_such_a_file_is_one_line_with_the_quoted_name(gitenv: GitEnv, repo: Path):
    (repo / NAME).write_bytes(b"not a checkpoint at all")
    proc = gitenv.run(["git", "add", NAME], cwd=repo, check=False)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith(b"git-theta:")]
    assert len(ours) == 1, proc.stderr
    line = ours[0].decode("ascii")
    assert line.startswith(f"git-theta: clean failed: {QUOTED}: not a checkpoint format")
    assert "internal error" not in line
    assert b"Traceback" not in proc.stderr
    assert _git_bytes(gitenv, repo, "ls-files") == b".gitattributes\n"
