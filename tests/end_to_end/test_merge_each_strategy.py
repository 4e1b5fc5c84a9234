"""Every registered strategy through a real `git merge`, with every per-parameter state in the
same merge: both changed (the strategy's), one side changed, both changed alike, added on one
side, deleted on one side, deleted on both. (fisher, which needs Fisher files, has its own
end-to-end tests in test_merge_fisher.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.merges import all_strategies, get_strategy, parse_options
from git_theta.merges.base import resolve_weights
from testing.checkpoints import read_safetensors, write_safetensors

OPTIONS = {"ties": "density=0.5", "dare-linear": "density=0.5 seed=3", "dare-ties": "density=0.5"}
STRATEGIES = [name for name in all_strategies() if name != "fisher"]

rng = np.random.default_rng(7)
BASE = {n: rng.standard_normal((8, 6)).astype(np.float32) for n in "abcef"}
OURS = dict(BASE, a=BASE["a"] + rng.standard_normal((8, 6)).astype(np.float32), c=BASE["c"] * 2)
OURS.pop("e")
OURS.pop("f")
THEIRS = dict(
    BASE,
    a=BASE["a"] + rng.standard_normal((8, 6)).astype(np.float32),
    b=BASE["b"] - 1,
    c=BASE["c"] * 2,
    d=np.ones((3,), np.float32),
)
THEIRS.pop("f")


def _commit(env, repo, params, message):
    write_safetensors(repo / "model.safetensors", {n: ("F32", v) for n, v in params.items()})
    env.git("add", "-A", cwd=repo)
    env.git("commit", "-q", "-m", message, cwd=repo)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_in_a_real_git_merge(gitenv, strategy):
    repo = gitenv.init_repo(track=("*.safetensors",))
    _commit(gitenv, repo, BASE, "base")
    gitenv.git("checkout", "-q", "-b", "theirs", cwd=repo)
    _commit(gitenv, repo, THEIRS, "theirs")
    gitenv.git("checkout", "-q", "main", cwd=repo)
    _commit(gitenv, repo, OURS, "ours")
    options = OPTIONS.get(strategy, "")
    proc = gitenv.run(
        [
            "git",
            "-c",
            f"theta.merge.strategy={strategy}",
            "-c",
            f"theta.merge.options={options}",
            "merge",
            "--no-edit",
            "theirs",
        ],
        cwd=repo,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = {n: a for n, (_, a) in read_safetensors(repo / "model.safetensors").items()}
    assert set(got) == {"a", "b", "c", "d"}  # e deleted by ours, f by both, d added by theirs
    np.testing.assert_array_equal(got["b"], THEIRS["b"])
    np.testing.assert_array_equal(got["c"], BASE["c"] * 2)
    np.testing.assert_array_equal(got["d"], THEIRS["d"])

    s = get_strategy(strategy)
    raw = dict(kv.split("=") for kv in options.split())
    parsed = parse_options(s, raw)
    if s.pick is not None:
        want = {"ours": OURS, "theirs": THEIRS, "base": BASE}[s.pick]["a"]
    else:
        want = s.merge(
            BASE["a"], [OURS["a"], THEIRS["a"]], resolve_weights(parsed, 2), parsed, name="a"
        )
    # The driver's result is the strategy's, bit for bit (the strategies themselves are
    # checked against numpy references and mergekit in the unit tests).
    np.testing.assert_array_equal(got["a"], want.astype(np.float32))
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""


def _write(path, params):
    if path.suffix == ".safetensors":
        write_safetensors(path, {n: ("F32", v) for n, v in params.items()})
    elif path.suffix == ".npz":
        with path.open("wb") as f:
            np.savez(f, **params)
    else:
        import torch

        torch.save({n: torch.from_numpy(v.copy()) for n, v in params.items()}, path)


@pytest.mark.parametrize("name", ["model.safetensors", "model.npz", "model.pt"])
def test_merge_that_changes_the_parameter_set_leaves_a_clean_tree(gitenv, name):
    """The merged file has no stored layout (no side has its parameters); the format's
    canonical one is written, and reading it back must give the committed metadata."""
    repo = gitenv.init_repo(track=(name,))
    path = repo / name
    _write(path, BASE)
    gitenv.git("add", "-A", cwd=repo)
    gitenv.git("commit", "-q", "-m", "base", cwd=repo)
    gitenv.git("checkout", "-q", "-b", "theirs", cwd=repo)
    _write(path, THEIRS)
    gitenv.git("commit", "-q", "-am", "theirs", cwd=repo)
    gitenv.git("checkout", "-q", "main", cwd=repo)
    _write(path, OURS)
    gitenv.git("commit", "-q", "-am", "ours", cwd=repo)
    gitenv.git("-c", "theta.merge.strategy=average", "merge", "-q", "--no-edit", "theirs", cwd=repo)
    assert '"layout": null' in gitenv.git("cat-file", "-p", f"HEAD:{name}", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    path.touch()
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
