"""Two work trees of one repository share the store. A `git add` that fails on a checkpoint's
last tensor, raced against a `git add` of a valid checkpoint with the same leading tensors,
must never take objects from under the one that succeeds."""

from __future__ import annotations

import subprocess

import numpy as np

from testing.checkpoints import write_safetensors

ROUNDS = 10
TENSORS = 8
ELEMENTS = 64 * 1024  # 256 KiB of F32 each: both adds spend time among the same objects


def _params(round_: int) -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(round_)
    return {
        f"layer{i:02d}.weight": ("F32", rng.standard_normal(ELEMENTS).astype("<f4"))
        for i in range(TENSORS)
    }


def test_a_failing_add_raced_against_a_good_one_never_loses_a_committed_version(gitenv):
    main = gitenv.init_repo(track=("*.safetensors",))
    other = gitenv.root / "other"
    gitenv.git("worktree", "add", "-q", "-b", "other", str(other), cwd=main)
    committed = {}
    for round_ in range(ROUNDS):
        params = _params(round_)
        good = write_safetensors(other / "model.safetensors", params)
        # The same leading tensors; the file ends inside the last one.
        (main / "model.safetensors").write_bytes(good[:-100])
        procs = [
            subprocess.Popen(
                ["git", "add", "model.safetensors"],
                cwd=cwd,
                env=gitenv.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for cwd in (main, other)
        ]
        failing, succeeding = (p.communicate(timeout=60)[1] for p in procs)
        assert procs[0].returncode != 0 and b"truncated checkpoint" in failing
        assert procs[1].returncode == 0, succeeding.decode()
        gitenv.git("commit", "-q", "-m", f"round {round_}", cwd=other)
        committed[gitenv.git("rev-parse", "HEAD", cwd=other).strip()] = good

    assert "model.safetensors" not in gitenv.git("ls-files", cwd=main)
    for commit, data in committed.items():  # each round's content differs: each is a smudge
        gitenv.git("checkout", "-q", commit, "--", "model.safetensors", cwd=other)
        assert (other / "model.safetensors").read_bytes() == data, commit
