"""docs/api.md's examples, run as written, in order, in one scratch repository."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from testing.checkpoints import read_safetensors
from testing.gitenv import GitEnv

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if 'Repository(".")' in b and "with git_theta" in b]


def test_the_three_examples_run_as_written(gitenv: GitEnv):
    pytest.importorskip("torch")
    found = examples()
    assert len(found) == 3, "docs/api.md: a training loop, an evaluation, a comparison"
    repo = gitenv.init_repo(track=("*.safetensors",))
    outputs = [gitenv.run([sys.executable, "-c", code], cwd=repo).stdout.decode() for code in found]
    training, evaluation, comparison = outputs
    assert [line.split(":")[0] for line in training.splitlines()] == [
        "step 10",
        "step 20",
        "step 30",
    ]
    log = gitenv.git("log", "--format=%s", "main", cwd=repo).split("\n")
    assert log[:4] == ["final", "step 30", "step 20", "step 10"]
    assert "parameters: ['0.bias', '0.weight', '2.bias', '2.weight']" in evaluation
    assert "first checkpoint's 0.weight: (32, 16) float32" in evaluation
    assert comparison.splitlines()[0] == "model.safetensors 2.weight modified 1.0"
    assert comparison.splitlines()[-1] == "merged into averaged.safetensors"
    # The comparison's branch doubled the head; the average is 1.5x main's.
    main = read_safetensors(repo / "averaged.safetensors")
    gitenv.git("checkout", "-q", "main", "--", "model.safetensors", cwd=repo)
    base = read_safetensors(repo / "model.safetensors")
    np.testing.assert_allclose(main["2.weight"][1], base["2.weight"][1] * 1.5, rtol=1e-6)
