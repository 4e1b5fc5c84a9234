"""Task-vector edits through `git theta merge-models`: negation, addition, analogy, selection by
similarity, and LoRA sums staged as one stacked low-rank update."""

from __future__ import annotations

import numpy as np

from testing.checkpoints import read_safetensors
from tests.end_to_end.test_similar import COSINES, SHAPES, Repo, _unit

TOL = {"rtol": 1e-6, "atol": 1e-7}


def _tau(seed: int, names=tuple(SHAPES)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        n: (0.1 * rng.standard_normal(s) if n in names else np.zeros(s)) for n, s in SHAPES.items()
    }


def _merge(r: Repo, *args: str, base: bool = True) -> tuple[str, dict[str, np.ndarray]]:
    r.git("checkout", "-q", "main")
    on = ("--base", "main") if base else ()
    proc = r.env.theta("merge-models", *on, "-o", "model.safetensors", *args, cwd=r.repo)
    got = read_safetensors(r.repo / "model.safetensors")
    return proc.stdout.decode(), {n: v.astype(np.float64) for n, (_, v) in got.items()}


def _version(r: Repo, rev: str) -> dict[str, np.ndarray]:
    r.git("checkout", "-q", rev)
    got = read_safetensors(r.repo / "model.safetensors")
    return {n: v.astype(np.float64) for n, (_, v) in got.items()}


def test_negation_addition_and_analogy_equal_numpy(gitenv):
    r = Repo(gitenv)
    # a changes every parameter; b and c change some only (one-sided parameters must scale too)
    r.branch("a", _tau(1))
    r.branch("b", _tau(2, ("layers.0.w", "head.w")))
    r.branch("c", _tau(3, ("layers.1.w",)))
    base = {n: v.astype(np.float64) for n, v in r.base.items()}
    theta = {x: _version(r, x) for x in "abc"}
    tau = {x: {n: theta[x][n] - base[n] for n in SHAPES} for x in "abc"}

    _, got = _merge(
        r, "-s", "task-arithmetic", "--option", "weights=-1", "--option", "lambda=0.5", "a"
    )
    for n in SHAPES:  # forget a: base - 0.5 tau_a
        np.testing.assert_allclose(got[n], base[n] - 0.5 * tau["a"][n], **TOL)

    opts = ["--option", "weights=0.7,0.3", "--option", "lambda=0.8"]
    _, got = _merge(r, "-s", "task-arithmetic", *opts, "b", "c")
    for n in SHAPES:  # each parameter changed by one model only, still weighted and scaled
        want = base[n] + 0.8 * (0.7 * tau["b"][n] + 0.3 * tau["c"][n])
        np.testing.assert_allclose(got[n], want, **TOL)

    _, got = _merge(r, "-s", "task-arithmetic", "--option", "weights=1,1,-1", "c", "b", "a")
    for n in SHAPES:  # analogy: tau_c + tau_b - tau_a
        want = base[n] + tau["c"][n] + tau["b"][n] - tau["a"][n]
        np.testing.assert_allclose(got[n], want, **TOL)

    _, got = _merge(r, "-s", "ties", "--option", "lambda=0.5", "c")
    for n in SHAPES:  # lambda applies with TIES too, on a single model's parameters
        np.testing.assert_allclose(got[n], base[n] + 0.5 * tau["c"][n], **TOL)


def test_select_merges_the_most_similar_specialists(gitenv):
    r = Repo(gitenv)
    u = _unit(np.random.default_rng(1))
    for i, (name, c) in enumerate(COSINES.items()):
        v = _unit(np.random.default_rng(10 + i), orth=u)
        r.branch(name, {n: 0.02 * (c * u[n] + np.sqrt(1 - c * c) * v[n]) for n in SHAPES})
    r.branch("target", {n: 0.05 * u[n] for n in SHAPES})
    theta = {x: _version(r, x) for x in ("close", "half")}
    main = r.git("rev-parse", "main").stdout.decode().strip()
    out, got = _merge(
        r, "--select", "2", "--similar-to", "target", "-s", "task-arithmetic", *COSINES, base=False
    )
    first = out.splitlines()[0]
    assert first.startswith("picked close (cosine +0.9")
    assert ", half (cosine +0.5" in first
    assert first.endswith(f"of 4 candidates by task-vector similarity to target; base {main[:12]}")
    for n in SHAPES:
        want = theta["close"][n] + theta["half"][n] - r.base[n].astype(np.float64)
        np.testing.assert_allclose(got[n], want, **TOL)
    args = ("merge-models", "-s", "task-arithmetic", "-o", "model.safetensors", "--select")
    proc = r.env.theta(*args, "5", "--similar-to", "target", *COSINES, cwd=r.repo, check=False)
    assert (proc.returncode, proc.stderr) == (
        1,
        b"git-theta: error: --select 5: only 4 of 4 candidates have a task vector to compare "
        b"with target's\n",
    )
    proc = r.env.theta(*args, "1", "close:model.safetensors", cwd=r.repo, check=False)
    assert proc.stderr == (
        b"git-theta: error: --select takes revisions (branches, tags, commits), not files\n"
    )


def test_lora_sum_and_negation_stay_low_rank_when_staged(gitenv):
    r = Repo(gitenv)
    lora = ("--update-type", "low-rank", "--rank", "2", "--accept-lossy")
    for i, name in enumerate(["one", "two"]):
        rng = np.random.default_rng(40 + i)
        r.branch(
            name,
            {
                n: 0.1 * rng.standard_normal((s[0], 2)) @ rng.standard_normal((2, s[1]))
                for n, s in SHAPES.items()
            },
            *lora,
        )
    theta = {x: _version(r, x) for x in ("one", "two")}
    base = {n: v.astype(np.float64) for n, v in r.base.items()}
    for args, want in [
        (("two", "one"), {n: theta["one"][n] + theta["two"][n] - base[n] for n in SHAPES}),
        (("--option", "weights=-1", "one"), {n: 2 * base[n] - theta["one"][n] for n in SHAPES}),
    ]:
        _, got = _merge(r, "-s", "task-arithmetic", "--stage", *args)
        r.git("checkout", "-q", "-b", f"edit-{len(args)}")  # the staged merge comes along
        r.git("commit", "-q", "-m", "edit")
        assert r.git("status", "--porcelain").stdout == b""
        blob = r.git("cat-file", "blob", "HEAD:model.safetensors").stdout.decode()
        rank = 2 * (len(args) - (2 if args[0] == "--option" else 0))
        for n, s in SHAPES.items():
            entry = _entry(blob, n)
            (update,) = entry["updates"]
            assert update["type"] == "low-rank"
            assert update["a"]["size"] > 0
            a_shape = _object_shape(r, update["a"]["oid"])
            assert a_shape == (rank, s[1])
            np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6)


def _entry(blob: str, name: str) -> dict:
    from git_theta import metadata as md

    return md.decode(blob.encode()).params[name].to_json()


def _object_shape(r: Repo, oid: str) -> tuple[int, ...]:
    from git_theta.git.repo import Repo as GitRepo
    from git_theta.metadata import ObjectRef
    from git_theta.store.location import open_store

    store = open_store(GitRepo(r.repo))
    path = store.path(oid)
    ref = ObjectRef(oid, path.stat().st_size)
    return tuple(store.load_tensor(ref).shape)
