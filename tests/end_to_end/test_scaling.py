"""Correctness at scale, and per-file (not per-tensor) costs, through real git.

The timing targets (20,000 tensors within 3x of Git LFS, 100,000 parameters within 12x of
10,000) live in benchmarks/bench_scaling.py; these tests only check what does not depend on
the machine's speed.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

from git_theta import metadata as md
from testing.gitenv import GitEnv, store_objects

CHECKPOINT = "model.safetensors"
ELEMS = 2  # per tensor: the count of tensors is the load here, not their bytes


def write_many(path: Path, n: int, offset: float = 0.0) -> bytes:
    """A safetensors file of `n` distinct F32 tensors of ELEMS elements each."""
    header = {
        f"layers.{i // 100}.experts.{i % 100}.w": {
            "dtype": "F32",
            "shape": [ELEMS],
            "data_offsets": [i * ELEMS * 4, (i + 1) * ELEMS * 4],
        }
        for i in range(n)
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    data = (np.arange(n * ELEMS, dtype="<f4") + np.float32(offset)).tobytes()
    blob = struct.pack("<Q", len(text)) + text + data
    path.write_bytes(blob)
    return blob


def _git_commands(trace: Path) -> list[str]:
    """The git commands and filter processes that ran, as GIT_TRACE logged them."""
    found = re.findall(r"trace: (?:built-in|run_command): (.*)", trace.read_text())
    return [line for line in found if "exit handler" not in line]


def test_a_5000_tensor_checkpoint_round_trips(gitenv: GitEnv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    data = write_many(repo / CHECKPOINT, 5_000)
    gitenv.git("add", CHECKPOINT, cwd=repo)
    gitenv.git("commit", "-q", "-m", "many tensors", cwd=repo)
    meta = md.decode(gitenv.run(["git", "cat-file", "blob", f"HEAD:{CHECKPOINT}"], cwd=repo).stdout)
    assert len(meta.params) == 5_000
    # One object per distinct tensor, and the safetensors header's: no more, none missing.
    assert len(meta.objects()) == 5_001
    assert store_objects(repo) == {ref.oid for ref in meta.objects()}
    assert not any((repo / ".git" / "theta" / "tmp").iterdir())  # no temp file left behind

    (repo / CHECKPOINT).unlink()
    gitenv.git("checkout", "--", CHECKPOINT, cwd=repo)
    assert (repo / CHECKPOINT).read_bytes() == data
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""


def test_git_commands_run_per_file_not_per_tensor(gitenv: GitEnv, tmp_path: Path):
    """Adding and checking out 10 or 1,000 tensors runs the very same git commands."""
    seen = {}
    for n in (10, 1_000):
        repo = gitenv.init_repo(f"repo-{n}", track=("*.safetensors",))
        data = write_many(repo / CHECKPOINT, n)
        trace = tmp_path / f"trace-{n}"
        env = {"GIT_TRACE": str(trace)}
        gitenv.run(["git", "add", CHECKPOINT], cwd=repo, env=env)
        gitenv.git("commit", "-q", "-m", "v1", cwd=repo)
        write_many(repo / CHECKPOINT, n, offset=0.5)  # every tensor changed
        gitenv.run(["git", "add", CHECKPOINT], cwd=repo, env=env)
        gitenv.run(["git", "checkout", "HEAD", "--", CHECKPOINT], cwd=repo, env=env)
        assert (repo / CHECKPOINT).read_bytes() == data
        seen[n] = _git_commands(trace)
    assert seen[10] == seen[1_000]
    assert len(seen[10]) < 40
