"""Correctness at scale, and per-file (not per-tensor) costs, through real git.

The timing targets (20,000 tensors within 3x of Git LFS, 100,000 parameters within 12x of
10,000) live in benchmarks/bench_scaling.py; these tests only check what does not depend on
the machine's speed.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import numpy as np

from git_theta import metadata as md
from git_theta.clean_run import BATCH_TENSORS
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
    # The tiny tensors share packs, one per batch of BATCH_TENSORS (git_theta/store/pack.py),
    # each its own member; plus the safetensors header's object: no more, none missing.
    refs = [e.object for e in meta.params.values()]
    assert all(r.offset is not None for r in refs)
    assert len({(r.oid, r.offset) for r in refs}) == 5_000
    assert len(meta.objects()) == 1 + math.ceil(5_000 / BATCH_TENSORS)
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


def test_a_packed_checkpoint_reuses_unchanged_members_and_its_store_stays_whole(gitenv: GitEnv):
    """Changing one tiny tensor stores that tensor only; every other entry keeps its member
    of the first version's packs, which fsck verifies, prune keeps and checkout reads."""
    repo = gitenv.init_repo(track=("*.safetensors",))
    write_many(repo / CHECKPOINT, 1_000)
    gitenv.git("add", CHECKPOINT, cwd=repo)
    gitenv.git("commit", "-q", "-m", "v1", cwd=repo)
    blob = (repo / CHECKPOINT).read_bytes()
    last = len(blob) - 4 * ELEMS
    changed = blob[:last] + struct.pack("<2f", 7.0, 8.0)  # the last tensor only
    (repo / CHECKPOINT).write_bytes(changed)
    gitenv.git("commit", "-q", "-am", "v2", cwd=repo)

    def meta(rev: str) -> md.Metadata:
        out = gitenv.run(["git", "cat-file", "blob", f"{rev}:{CHECKPOINT}"], cwd=repo).stdout
        return md.decode(out)

    v1, v2 = meta("HEAD~"), meta("HEAD")
    moved = [n for n in v1.params if v1.params[n] != v2.params[n]]
    assert moved == ["layers.9.experts.99.w"]
    new = {ref.oid for ref in v2.objects()} - {ref.oid for ref in v1.objects()}
    assert len(new) == 1 and store_objects(repo) >= {r.oid for r in v1.objects() + v2.objects()}

    assert b"no problems" in gitenv.theta("fsck", "--decode", cwd=repo).stdout
    gitenv.theta("prune", cwd=repo)  # reads every version's members without complaint
    assert store_objects(repo) >= {r.oid for r in v1.objects() + v2.objects()}
    for rev, content in (("HEAD~", blob), ("HEAD", changed)):
        gitenv.git("checkout", "-q", rev, "--", CHECKPOINT, cwd=repo)
        assert (repo / CHECKPOINT).read_bytes() == content
