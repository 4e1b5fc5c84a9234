"""`git theta similar` through real git: specialists with known cosines ranked exactly."""

from __future__ import annotations

import json

import numpy as np

from testing.checkpoints import read_safetensors, write_safetensors

SHAPES = {"layers.0.w": (32, 16), "layers.1.w": (32, 16), "head.w": (8, 16)}
COSINES = {"close": 0.9, "half": 0.5, "far": 0.1, "opposite": -0.3}


def _unit(rng, orth=None) -> dict[str, np.ndarray]:
    v = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    if orth is not None:
        dot = sum(float((v[n] * orth[n]).sum()) for n in SHAPES)
        v = {n: v[n] - dot * orth[n] for n in SHAPES}
    norm = np.sqrt(sum(float((x**2).sum()) for x in v.values()))
    return {n: x / norm for n, x in v.items()}


class Repo:
    def __init__(self, gitenv, dtype: str = "F32") -> None:
        self.env, self.dtype = gitenv, dtype
        self.repo = gitenv.init_repo(track=("*.safetensors",))
        self.base = {
            n: np.random.default_rng(0).standard_normal(s).astype(self._np)
            for n, s in SHAPES.items()
        }
        self.commit("base", self.base)

    @property
    def _np(self):
        return np.float32 if self.dtype == "F32" else np.float64

    def git(self, *args: str):
        return self.env.run(["git", *args], cwd=self.repo)

    def commit(self, message: str, params, *add: str) -> None:
        write_safetensors(
            self.repo / "model.safetensors",
            {n: (self.dtype, np.asarray(v, self._np)) for n, v in params.items()},
        )
        if add:
            self.env.theta("add", *add, "model.safetensors", cwd=self.repo)
        else:
            self.git("add", "model.safetensors")
        self.git("commit", "-q", "-m", message)

    def branch(self, name: str, tau, *add: str) -> None:
        self.git("checkout", "-q", "-b", name, "main")
        self.commit(name, {n: self.base[n] + tau[n] for n in SHAPES}, *add)

    def delta(self, rev: str) -> np.ndarray:
        self.git("checkout", "-q", rev)
        got = read_safetensors(self.repo / "model.safetensors")
        return np.concatenate(
            [
                (got[n][1].astype(np.float64) - self.base[n].astype(np.float64)).ravel()
                for n in sorted(SHAPES)
            ]
        )

    def similar(self, *args: str) -> dict:
        out = self.env.theta("similar", *args, "--format", "json", cwd=self.repo).stdout
        return json.loads(out)


def _cos(x: np.ndarray, y: np.ndarray) -> float:
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_specialists_rank_by_their_known_cosine(gitenv):
    r = Repo(gitenv)
    rng = np.random.default_rng(1)
    u = _unit(rng)
    for i, (name, c) in enumerate(COSINES.items()):
        v = _unit(np.random.default_rng(10 + i), orth=u)
        r.branch(name, {n: (2 + i) * 0.01 * (c * u[n] + np.sqrt(1 - c * c) * v[n]) for n in SHAPES})
    r.branch("target", {n: 0.05 * u[n] for n in SHAPES})
    doc = r.similar("target")
    ranked = [e["revision"] for e in doc["revisions"]]
    assert ranked == ["close", "half", "far", "opposite", "main"]  # main is the base itself
    target = r.delta("target")
    for e in doc["revisions"][:4]:
        assert e["cosine"] == pytest_approx(COSINES[e["revision"]], 1e-4)  # float32 rounding
        assert e["cosine"] == pytest_approx(_cos(target, r.delta(e["revision"])), 1e-6)
        assert e["compared"] == {"parameters": 3, "pairs": {"dense/dense": 3}, "skipped": {}}
        assert sorted(e["groups"]) == ["head", "layers.0", "layers.1"]
    assert doc["revisions"][4]["cosine"] is None
    r.git("checkout", "-q", "target")
    top = r.env.theta("similar", "--top", "2", cwd=r.repo).stdout.decode()
    lines = top.splitlines()
    assert lines[2].split()[:3] == ["1", "close", f"{_cos(target, r.delta('close')):+.4f}"]
    assert lines[3].split()[:2] == ["2", "half"]
    assert len(lines) == 5  # title, header, two rows, target norm
    # --to limits the candidates, --param the parameters compared
    doc = r.similar("target", "--to", "far", "--to", "half", "--param", "layers.*")
    assert [e["revision"] for e in doc["revisions"]] == ["half", "far"]
    assert doc["revisions"][0]["compared"]["parameters"] == 2


def pytest_approx(value: float, rel: float):
    import pytest

    return pytest.approx(value, rel=rel, abs=rel)


def test_low_rank_specialists_compare_without_expanding(gitenv):
    r = Repo(gitenv, "F64")
    taus = {}
    for i, name in enumerate(["lora-a", "lora-b", "target"]):
        rng = np.random.default_rng(20 + i)
        shared = np.random.default_rng(99)
        taus[name] = {
            n: 0.1
            * (rng.standard_normal((s[0], 2)) + shared.standard_normal((s[0], 2)))
            @ rng.standard_normal((2, s[1]))
            for n, s in SHAPES.items()
        }
        r.branch(name, taus[name], "--update-type", "low-rank", "--rank", "2", "--accept-lossy")
    _check_stored_kind(r, "low-rank", "lora-a", "lora-b")


def test_bad_revisions_and_paths_are_reported_not_raised(gitenv):
    r = Repo(gitenv)
    r.branch("one", _unit(np.random.default_rng(3)))
    r.branch("two", _unit(np.random.default_rng(4)))
    proc = r.env.theta("similar", "nope", cwd=r.repo, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("git-theta: error: ")
    assert b"nope" in proc.stderr and len(proc.stderr.splitlines()) == 1
    doc = r.similar("two", "--to", "one", "--to", "nope")
    assert [e["revision"] for e in doc["revisions"]] == ["one", "nope"]
    assert "nope" in doc["revisions"][1]["note"] and doc["revisions"][1]["cosine"] is None
    md = r.env.theta("similar", "two", "--format", "markdown", cwd=r.repo).stdout.decode()
    assert md.splitlines()[2] == "| rank | revision | cosine | \\|tau\\| | compared |"
    assert md.splitlines()[4].startswith("| 1 | `one` | ")
    proc = r.env.theta(
        "similar", "two", "--path", "other.safetensors", "--format", "json", cwd=r.repo
    )
    (entry,) = [e for e in json.loads(proc.stdout)["revisions"] if e["revision"] == "one"]
    assert entry["compared"]["skipped"] == {"other.safetensors not in the base": 1}


def test_fisher_weights_the_cosine_by_the_targets_fisher_file(gitenv):
    r = Repo(gitenv)
    r.branch("one", _unit(np.random.default_rng(3)))
    r.branch("two", _unit(np.random.default_rng(4)))
    rng = np.random.default_rng(6)
    fisher = {n: rng.uniform(0, 2, s).astype(np.float32) for n, s in SHAPES.items()}
    write_safetensors(
        r.repo / "model.fisher.safetensors", {n: ("F32", v) for n, v in fisher.items()}
    )
    r.git("add", "model.fisher.safetensors")
    r.git("commit", "-q", "-m", "fisher of two")
    doc = r.similar("two", "--to", "one", "--fisher")
    f = np.concatenate([fisher[n].astype(np.float64).ravel() for n in sorted(SHAPES)])
    x, y = r.delta("two"), r.delta("one")
    want = float(np.sum(f * x * y) / np.sqrt(np.sum(f * x * x) * np.sum(f * y * y)))
    (entry,) = doc["revisions"]
    assert entry["cosine"] == pytest_approx(want, 1e-6)
    assert entry["cosine"] != pytest_approx(_cos(x, y), 1e-3)  # the weights matter
    assert entry["compared"]["parameters"] == 3  # the Fisher file itself is not compared
    proc = r.env.theta("similar", "one", "--to", "two", "--fisher", cwd=r.repo, check=False)
    assert proc.returncode == 1
    assert b"no Fisher file for model.safetensors in" in proc.stderr


def test_full_fine_tunes_stored_as_deltas_compare_as_deltas(gitenv):
    r = Repo(gitenv)
    for i, name in enumerate(["tune-a", "tune-b", "target"]):
        rng = np.random.default_rng(30 + i)
        shared = np.random.default_rng(98)  # every tune shares a direction
        tau = {
            n: 0.01 * (rng.standard_normal(s) + shared.standard_normal(s))
            for n, s in SHAPES.items()
        }
        r.branch(name, tau, "--update-type", "delta")
    _check_stored_kind(r, "delta", "tune-a", "tune-b")


def _check_stored_kind(r: Repo, kind: str, *others: str) -> None:
    """`others` are stored as `kind` updates, compared as such, with numpy's cosines."""
    meta = r.git("cat-file", "blob", f"{others[0]}:model.safetensors").stdout.decode()
    assert f'"{kind}"' in meta
    doc = r.similar("target", *(arg for o in others for arg in ("--to", o)))
    target = r.delta("target")
    assert sorted(e["revision"] for e in doc["revisions"]) == sorted(others)
    for e in doc["revisions"]:
        assert e["compared"]["pairs"] == {f"{kind}/{kind}": 3}
        assert e["cosine"] == pytest_approx(_cos(target, r.delta(e["revision"])), 1e-6)
