"""examples/specialists.py run for real (`--quick`: fewer Adam steps, the same PEFT LoRA training).

The example's tasks are mixes of four skills and the new task is mostly skills 1 and 2, so the
specialists for tasks 1 and 2 must rank first, be the two merged, and the merge must be the
commit checked out at the end.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from testing.checkpoints import read_safetensors
from testing.gitenv import GitEnv

EXAMPLE = Path(__file__).parents[2] / "examples" / "specialists.py"
RANK_ROW = re.compile(r"^\s+(\d+)\s+(\S+)\s+([+-]\d\.\d+)\s", re.M)
TASKS = ["task-1", "task-2", "task-3", "task-4", "new-task"]
EVALUATED = ["main", "task-1", "task-2", "new-task", "merged"]


def _metrics(out: str) -> dict[str, dict[str, float]]:
    lines = out[out.index("MSE on") :].splitlines()
    assert lines[0].split()[2:] == TASKS
    rows = {}
    for line in lines[1 : 1 + len(EVALUATED)]:
        rev, *values = line.split()
        rows[rev] = dict(zip(TASKS, map(float, values), strict=True))
    return rows


def _checkpoint(env: GitEnv, repo: Path, rev: str) -> dict[str, np.ndarray]:
    """The checkpoint at `rev` as the smudge filter writes it (git cat-file --filters)."""
    raw = env.run(["git", "cat-file", "--filters", f"{rev}:model.safetensors"], cwd=repo).stdout
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(raw)
        f.flush()
        return {n: a for n, (_, a) in read_safetensors(Path(f.name)).items()}


def test_specialists_example_ranks_merges_and_evaluates(gitenv: GitEnv) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    work = gitenv.root / "work"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), str(work), "--quick"],
        cwd=gitenv.root,
        env=gitenv.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout

    # The ranking: the two specialists sharing the new task's skills first, pointing its way.
    ranked = [(rev, float(cos)) for _, rev, cos in RANK_ROW.findall(out)]
    assert len(ranked) == 4, out  # main, with no task vector, is listed without a cosine
    top, rest = ranked[:2], ranked[2:4]
    assert {rev for rev, _ in top} == {"task-1", "task-2"}, out
    assert {rev for rev, _ in rest} == {"task-3", "task-4"}, out
    assert min(c for _, c in top) > 0 > max(c for _, c in rest), out
    picked = re.search(r"^picked (\S+) \(cosine [^)]*\), (\S+) \(cosine", out, re.M)
    assert picked and {picked[1], picked[2]} == {"task-1", "task-2"}, out

    # The merge is a commit on `merged` over main, checked out with a clean work tree.
    repo = work / "repo"
    assert gitenv.git("branch", "--show-current", cwd=repo).strip() == "merged"
    assert gitenv.git("rev-parse", "HEAD^", cwd=repo) == gitenv.git("rev-parse", "main", cwd=repo)
    assert "closest to new-task" in gitenv.git("log", "-1", "--format=%s", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    meta = json.loads(gitenv.git("show", "HEAD:model.safetensors", cwd=repo))
    # The stacked LoRA factors (rank 8), not a dense sum, where they are smaller: not for the
    # 8x64 head, where rank 8 is full rank.
    for layer in (0, 1):
        updates = meta["params"][f"layers.{layer}.weight"]["updates"]
        assert [u["type"] for u in updates] == ["low-rank"]
    # ... and it is main + 0.5 (tau_1 + tau_2), as the example asked.
    base, t1, t2 = (_checkpoint(gitenv, repo, rev) for rev in ("main", "task-1", "task-2"))
    on_disk = {n: a for n, (_, a) in read_safetensors(repo / "model.safetensors").items()}
    assert on_disk.keys() == base.keys()
    for name, got in on_disk.items():
        want = base[name] + 0.5 * ((t1[name] - base[name]) + (t2[name] - base[name]))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)

    # The metrics: one MSE per model and task, finite and in a sane range; each specialist
    # beats the base on its task, and the merge beats the base on the new task.
    rows = _metrics(out)
    assert list(rows) == EVALUATED
    for rev, scores in rows.items():
        for task, mse in scores.items():
            assert math.isfinite(mse) and 0 < mse < 5, (rev, task, mse)
    for task in ("task-1", "task-2", "new-task"):
        assert rows[task][task] < rows["main"][task]
    assert rows["merged"]["new-task"] < rows["main"]["new-task"]
