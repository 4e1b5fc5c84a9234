"""Updates worked out from the previous version: sparse, auto, low-rank by SVD; chains,
compaction, configuration, rebase and cherry-pick."""

from __future__ import annotations

import numpy as np
import pytest

from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv
from testing.model_repo import store_bytes
from testing.param_repo import ParamRepo

SHAPES = {
    "big.weight": ("F32", (256, 256)),
    "half.weight": ("F16", (64, 128)),
    "brain.weight": ("BF16", (64, 64)),
    "bias": ("F32", (256,)),
    "step": ("I64", ()),
}


def poke(params, name: str, fraction: float, seed: int = 1):
    """A copy of `params` with `fraction` of `name`'s entries changed (random positions)."""
    rng = np.random.default_rng(seed)
    out = dict(params)
    dtype, array = out[name]
    flat = array.reshape(-1).copy()
    idx = rng.choice(flat.size, max(1, int(flat.size * fraction)), replace=False)
    if flat.dtype == np.uint16:  # bf16 bit patterns: flip a mantissa bit
        flat[idx] ^= np.uint16(1)
    else:
        flat[idx] += np.asarray(0.5, flat.dtype)
    out[name] = (dtype, flat.reshape(array.shape))
    return out


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0]
        and np.array_equal(a[k][1].reshape(-1).view(np.uint8), b[k][1].reshape(-1).view(np.uint8))
        for k in a
    )


@pytest.fixture
def repo(gitenv: GitEnv) -> ParamRepo:
    r = ParamRepo(gitenv, SHAPES)
    r.commit("base")
    return r


def test_sparse_update_stores_only_the_changed_entries(repo: ParamRepo):
    before = store_bytes(repo.repo)
    edited = poke(repo.params, "big.weight", 0.01)
    repo.commit("sparse", edited, "--update-type", "sparse")
    entry = repo.entry("big.weight")
    assert entry["updates"][0]["type"] == "sparse"
    assert entry["updates"][0]["count"] == int(256 * 256 * 0.01)
    assert entry["object"] == repo.entry("big.weight", "HEAD~1")["object"]
    # 1% of the entries: at most 3% of the tensor's bytes.
    assert store_bytes(repo.repo) - before <= 0.03 * 256 * 256 * 4
    assert same(repo.fresh_checkout(), edited)


def test_sparse_update_is_bit_exact_for_tiny_edits_in_every_float_dtype(repo: ParamRepo):
    edited = dict(repo.params)
    for name in ("big.weight", "half.weight", "brain.weight"):
        dtype, array = edited[name]
        flat = array.reshape(-1).copy()
        flat.view(np.uint8 if flat.itemsize == 1 else f"u{flat.itemsize}")[7] ^= 1  # one ulp
        edited[name] = (dtype, flat.reshape(array.shape))
    repo.commit("ulps", edited, "--update-type", "sparse")
    for name in ("big.weight", "half.weight", "brain.weight"):
        assert repo.entry(name)["updates"][0]["count"] == 1
    assert same(repo.fresh_checkout(), edited)


def test_auto_picks_sparse_or_dense_per_tensor(repo: ParamRepo):
    edited = poke(repo.params, "big.weight", 0.01)
    rng = np.random.default_rng(5)
    dtype, array = edited["half.weight"]
    edited["half.weight"] = (dtype, (array + rng.standard_normal(array.shape)).astype(array.dtype))
    repo.write(edited)
    out = repo.theta("add", "model.safetensors", "--update-type", "auto").stdout.decode()
    assert "1 sparse" in out and "1 dense" in out
    repo.git("commit", "-q", "-m", "auto")
    assert repo.entry("big.weight")["updates"][0]["type"] == "sparse"
    assert "updates" not in repo.entry("half.weight")
    assert same(repo.fresh_checkout(), edited)


def test_low_rank_by_svd_is_lossy_reports_its_error_and_rewrites_the_file(repo: ParamRepo):
    rng = np.random.default_rng(3)
    dtype, w = repo.params["big.weight"]
    u, v = rng.standard_normal((256, 2)), rng.standard_normal((2, 256))
    noise = rng.standard_normal((256, 256)) * 1e-4
    edited = dict(repo.params)
    edited["big.weight"] = (dtype, (w + 0.01 * (u @ v) + noise).astype(w.dtype))
    repo.write(edited)
    out = repo.theta(
        "add", "model.safetensors", "--update-type", "low-rank", "--rank", "2", "--accept-lossy"
    )
    text = out.stdout.decode()
    assert "1 low-rank" in text and "relative error" in text and "rewrote" in text
    # The file now holds the rank-2 version: close to the edit, not equal to it.
    now = repo.read()["big.weight"][1]
    err = np.linalg.norm(now - edited["big.weight"][1]) / np.linalg.norm(
        edited["big.weight"][1] - w
    )
    assert 0 < err < 0.05
    assert repo.git("status", "--porcelain") == "M  model.safetensors\n"
    repo.git("commit", "-q", "-m", "svd")
    update = repo.entry("big.weight")["updates"][0]
    assert update["type"] == "low-rank"
    assert np.array_equal(repo.fresh_checkout()["big.weight"][1], now)


def test_configured_update_type_applies_to_plain_git_add(repo: ParamRepo):
    repo.git("config", "theta.updateType", "sparse")
    edited = poke(repo.params, "big.weight", 0.02)
    repo.commit("sparse by config", edited)
    assert repo.entry("big.weight")["updates"][0]["type"] == "sparse"
    (repo.repo / ".gitattributes").write_text(
        "*.safetensors filter=theta merge=theta diff=theta -text theta-update=dense\n"
    )
    repo.git("add", ".gitattributes")
    edited = poke(edited, "big.weight", 0.02, seed=2)
    repo.commit("dense by attribute", edited)
    assert "updates" not in repo.entry("big.weight")


def test_chain_of_updates_and_compaction(repo: ParamRepo):
    repo.git("config", "theta.maxUpdateChain", "3")
    versions = [repo.params]
    for i in range(3):
        versions.append(poke(versions[-1], "big.weight", 0.01, seed=10 + i))
        repo.commit(f"v{i + 1}", versions[-1], "--update-type", "sparse")
        assert len(repo.entry("big.weight")["updates"]) == i + 1
    versions.append(poke(versions[-1], "big.weight", 0.01, seed=20))
    repo.write(versions[-1])
    out = repo.theta("add", "model.safetensors", "--update-type", "sparse").stdout.decode()
    assert "compacted" in out
    repo.git("commit", "-q", "-m", "v4")
    assert "updates" not in repo.entry("big.weight")
    assert same(repo.fresh_checkout(), versions[-1])
    # Every older version still checks out exactly, from its own self-contained entry.
    for back, version in zip(range(4, -1, -1), versions, strict=True):
        repo.git("checkout", "-q", f"HEAD~{back}")
        assert same(repo.read(), version), back
        repo.git("checkout", "-q", "main")


def test_rebase_and_cherry_pick_of_update_commits(repo: ParamRepo):
    base = dict(repo.params)
    repo.git("checkout", "-q", "-b", "tune")
    tuned = poke(base, "big.weight", 0.01)
    repo.commit("sparse tune", tuned, "--update-type", "sparse")
    repo.git("checkout", "-q", "main")
    other = poke(base, "half.weight", 0.5, seed=7)
    repo.commit("main moves", other)
    repo.git("checkout", "-q", "tune")
    repo.git("rebase", "-q", "main")
    expected = dict(other)
    expected["big.weight"] = tuned["big.weight"]
    assert same(repo.read(), expected)
    assert repo.entry("big.weight")["updates"][0]["type"] == "sparse"
    assert same(repo.fresh_checkout(), expected)
    repo.git("checkout", "-q", "-b", "pick", "main~1")
    repo.git("cherry-pick", "tune")
    expected = dict(base)
    expected["big.weight"] = tuned["big.weight"]
    assert repo.entry("big.weight")["updates"][0]["type"] == "sparse"
    assert same(repo.fresh_checkout(), expected)


def test_status_after_checkout_of_an_update_version_is_clean(repo: ParamRepo):
    edited = poke(repo.params, "brain.weight", 0.05)
    repo.commit("bf16 sparse", edited, "--update-type", "sparse")
    repo.git("checkout", "-q", "HEAD~1")
    assert repo.git("status", "--porcelain") == ""
    repo.git("checkout", "-q", "main")
    assert repo.git("status", "--porcelain") == ""
    (repo.path).touch()
    assert repo.git("status", "--porcelain") == ""


def test_sparse_update_with_a_fish_mask_file(repo: ParamRepo, tmp_path):
    rng = np.random.default_rng(11)
    mask = rng.random((256, 256)) < 0.01
    dtype, w = repo.params["big.weight"]
    tuned = dict(repo.params)
    tuned["big.weight"] = (dtype, np.where(mask, w + np.float32(0.1), w).astype(w.dtype))
    mask_file = tmp_path / "fish_mask.safetensors"
    write_safetensors(mask_file, {"big.weight": ("BOOL", mask)})
    repo.write(tuned)
    out = repo.theta(
        "add", "model.safetensors", "--update-type", "sparse", "--update-path", str(mask_file)
    )
    assert "1 sparse" in out.stdout.decode()
    repo.git("commit", "-q", "-m", "fish")
    assert repo.entry("big.weight")["updates"][0]["count"] == int(mask.sum())
    assert same(repo.fresh_checkout(), tuned)

    # An entry changed outside the mask is refused, naming the parameter; nothing is staged.
    outside = dict(tuned)
    flat = outside["big.weight"][1].reshape(-1).copy()
    flat[int(np.flatnonzero(~mask.reshape(-1))[0])] += np.float32(1)
    outside["big.weight"] = (dtype, flat.reshape(256, 256))
    repo.write(outside)
    staged = repo.git("rev-parse", ":model.safetensors")
    proc = repo.theta(
        "add",
        "model.safetensors",
        "--update-type",
        "sparse",
        "--update-path",
        str(mask_file),
        check=False,
    )
    assert proc.returncode == 1
    assert "big.weight: 1 entries changed outside the mask" in proc.stderr.decode()
    assert repo.git("rev-parse", ":model.safetensors") == staged
