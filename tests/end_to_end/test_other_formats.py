"""PyTorch pickles and NumPy archives through real git: tensors equal, code never run."""

from __future__ import annotations

import os

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import random_params, write_safetensors


def _commit(env, repo, name):
    env.git("add", name, cwd=repo)
    env.git("commit", "-q", "-m", f"add {name}", cwd=repo)


def test_npz_round_trip(gitenv):
    repo = gitenv.init_repo(track=("*.npz",))
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((8, 4)).astype(np.float32), "ids": np.arange(5)}
    np.savez(repo / "m.npz", **arrays)
    _commit(gitenv, repo, "m.npz")
    meta = md.decode(gitenv.git("show", "HEAD:m.npz", cwd=repo).encode())
    assert (meta.format, sorted(meta.params)) == ("npz", ["ids", "w"])
    (repo / "m.npz").unlink()
    gitenv.git("checkout", "--", "m.npz", cwd=repo)
    with np.load(repo / "m.npz") as back:
        assert set(back.files) == set(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(back[key], value)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""


def test_pytorch_nested_checkpoint_round_trip(gitenv):
    torch = pytest.importorskip("torch")
    repo = gitenv.init_repo(track=("*.pt",))
    torch.manual_seed(0)
    ckpt = {
        "model": {"layer.weight": torch.randn(4, 3), "layer.bias": torch.randn(4).bfloat16()},
        "optimizer": {"state": {0: {"step": torch.tensor(7.0)}}, "lr": 0.01},
        "step": 1234,
        "config": {"name": "tiny", "dims": [4, 3]},
    }
    torch.save(ckpt, repo / "ckpt.pt")
    _commit(gitenv, repo, "ckpt.pt")
    ckpt["model"]["layer.weight"][0, 0] += 1
    torch.save(ckpt, repo / "ckpt.pt")
    _commit(gitenv, repo, "ckpt.pt")
    gitenv.git("checkout", "-q", "HEAD~1", cwd=repo)
    back = torch.load(repo / "ckpt.pt", weights_only=True)
    assert back["step"] == 1234 and back["config"] == {"name": "tiny", "dims": [4, 3]}
    assert back["optimizer"]["lr"] == 0.01
    assert torch.equal(back["optimizer"]["state"][0]["step"], torch.tensor(7.0))
    assert back["model"]["layer.bias"].dtype == torch.bfloat16
    expected = ckpt["model"]["layer.weight"].clone()
    expected[0, 0] -= 1
    assert torch.equal(back["model"]["layer.weight"], expected)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(gitenv, tmp_path):
    pytest.importorskip("torch")
    import torch

    repo = gitenv.init_repo(track=("*.pt",))
    marker = tmp_path / "pwned"
    torch.save({"w": _Exploit(str(marker))}, repo / "evil.pt")
    assert not marker.exists()
    proc = gitenv.run(["git", "add", "evil.pt"], cwd=repo, check=False)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.decode().splitlines() if x.startswith("git-theta:")]
    assert len(lines) == 1
    assert lines[0].startswith(
        "git-theta: clean failed: evil.pt: refused to load: the pickle calls"
    )
    assert not marker.exists()
    assert gitenv.git("ls-files", cwd=repo) == ".gitattributes\n"


def test_format_override_from_attributes_and_config(gitenv):
    repo = gitenv.init_repo(track=("*.weights",))
    with (repo / "m.weights").open("wb") as f:
        np.savez(f, w=np.arange(6, dtype=np.float32))
    # Sniffing would pick npz; an override that names another format must be obeyed.
    with (repo / ".gitattributes").open("a") as f:
        f.write("m.weights theta-format=safetensors\n")
    proc = gitenv.run(["git", "add", "m.weights"], cwd=repo, check=False)
    assert proc.returncode != 0
    assert "m.weights: safetensors header" in proc.stderr.decode()
    (repo / ".gitattributes").write_text("*.weights filter=theta merge=theta diff=theta -text\n")
    # The same through git config: obeyed against sniffing, then naming the right format.
    gitenv.git("config", "theta.format", "safetensors", cwd=repo)
    proc = gitenv.run(["git", "add", "m.weights"], cwd=repo, check=False)
    assert proc.returncode != 0
    assert "m.weights: safetensors header" in proc.stderr.decode()
    gitenv.git("config", "theta.format", "npz", cwd=repo)
    gitenv.git("add", "m.weights", cwd=repo)
    meta = md.decode(gitenv.git("show", ":m.weights", cwd=repo).encode())
    assert meta.format == "npz"


def test_without_torch_safetensors_and_npz_work_and_pt_says_what_to_install(gitenv, tmp_path):
    # torch is an optional extra. Made unimportable in every process git starts (a
    # sitecustomize on PYTHONPATH), safetensors and .npz still round trip through git.
    blocker = tmp_path / "no-torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    gitenv.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(blocker), gitenv.env.get("PYTHONPATH")) if p
    )
    repo = gitenv.init_repo(track=("*.safetensors", "*.npz", "*.pt"))
    st = write_safetensors(
        repo / "m.safetensors", random_params({"w": ("BF16", (8, 4)), "b": ("F32", (4,))})
    )
    arrays = {"w": np.arange(12, dtype=np.float16).reshape(3, 4)}
    np.savez(repo / "m.npz", **arrays)
    gitenv.git("add", "m.safetensors", "m.npz", cwd=repo)
    gitenv.git("commit", "-q", "-m", "no torch", cwd=repo)
    for name in ("m.safetensors", "m.npz"):
        (repo / name).unlink()
    gitenv.git("checkout", "--", ".", cwd=repo)
    assert (repo / "m.safetensors").read_bytes() == st
    with np.load(repo / "m.npz") as back:
        np.testing.assert_array_equal(back["w"], arrays["w"])
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""

    torch = pytest.importorskip("torch")  # this process has it; the filter does not
    torch.save({"w": torch.ones(3)}, repo / "m.pt")
    proc = gitenv.run(["git", "add", "m.pt"], cwd=repo, check=False)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.decode().splitlines() if x.startswith("git-theta:")]
    assert lines == [
        "git-theta: clean failed: m.pt: a PyTorch checkpoint; reading it needs torch "
        "(pip install 'git-theta[torch]')"
    ]
