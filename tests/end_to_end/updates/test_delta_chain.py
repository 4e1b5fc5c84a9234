"""Full fine-tunes stored as lossless deltas by default: chains across commits, compaction,
rebase, cherry-pick, merge, diff and ls-files, all with real git."""

from __future__ import annotations

import json

import pytest

from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import GitEnv
from testing.model_repo import store_bytes
from testing.param_repo import ParamRepo
from testing.training import train_step

SHAPES = {
    "a.weight": ("F32", (256, 256)),
    "b.weight": ("BF16", (256, 256)),
    "c.weight": ("F16", (128, 128)),
    "bias": ("F32", (256,)),
    "step": ("I64", ()),
}


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and a[k][1].tobytes() == b[k][1].tobytes() for k in a
    )


def types(entry: dict) -> list[str]:
    return [u["type"] for u in entry.get("updates", [])]


@pytest.fixture
def repo(gitenv: GitEnv) -> ParamRepo:
    r = ParamRepo(gitenv, SHAPES)
    r.commit("base")
    # `auto` is opt-in (it costs time at add and checkout; docs/updates.md).
    r.git("config", "theta.updateType", "auto")
    return r


def test_a_full_fine_tune_is_stored_as_deltas_under_auto(repo: ParamRepo):
    v1 = repo.meta()
    dense_bytes = sum(e["object"]["size"] for e in v1.values())
    before = store_bytes(repo.repo)
    v2 = train_step(repo.params, 1e-3)
    write_safetensors(repo.path, v2)
    out = repo.theta("add", "model.safetensors").stdout.decode()
    repo.git("commit", "-q", "-m", "step 1")

    meta = repo.meta()
    for name in ("a.weight", "b.weight", "c.weight"):
        assert types(meta[name]) == ["delta"], name
        assert meta[name]["object"] == v1[name]["object"]  # the base is the previous version
        assert meta[name]["updates"][0]["base"] == v1[name]["hash"]
    assert "delta" in out
    assert "updates" not in meta["step"]  # unchanged: the same entry
    assert store_bytes(repo.repo) - before < 0.8 * dense_bytes
    assert same(repo.fresh_checkout(), v2)


def test_a_chain_of_deltas_rebuilds_every_version_and_compacts_at_the_limit(repo: ParamRepo):
    repo.git("config", "theta.maxUpdateChain", "3")
    versions = [repo.params]
    for step in range(1, 5):
        versions.append(train_step(versions[-1], 1e-3, seed=step))
        repo.commit(f"step {step}", versions[-1])
    chains = [types(repo.meta(f"HEAD~{4 - i}")["a.weight"]) for i in range(1, 5)]
    assert chains == [["delta"], ["delta"] * 2, ["delta"] * 3, []]  # compacted at the 4th
    entry = repo.meta("HEAD~1")["a.weight"]
    names = {ref["oid"] for u in entry["updates"] for ref in [u["object"]]}
    assert len(names) == 3  # every object it needs is named in the entry
    for i, version in enumerate(versions):
        repo.git("checkout", "-q", f"HEAD~{4 - i}" if i < 4 else "main")
        assert same(repo.fresh_checkout(), version), i
        repo.git("checkout", "-q", "main")


def test_forced_types_and_opt_outs(repo: ParamRepo):
    v2 = train_step(repo.params, 1e-3)
    repo.commit("dense", v2, "--update-type", "dense")
    assert all(not types(e) for e in repo.meta().values())
    repo.git("config", "theta.updateType", "dense")
    repo.commit("configured dense", train_step(v2, 1e-3, seed=2))
    assert all(not types(e) for e in repo.meta().values())
    # --update-type delta forces it even on an unrelated change.
    unrelated = random_params(SHAPES, seed=9)
    repo.commit("forced", unrelated, "--update-type", "delta")
    assert {tuple(types(e)) for n, e in repo.meta().items()} == {("delta",)}
    assert same(repo.fresh_checkout(), unrelated)


def test_rebase_cherry_pick_and_merge_keep_delta_versions(repo: ParamRepo):
    base = repo.params
    repo.git("checkout", "-q", "-b", "ours")
    ours = dict(base, **{k: v for k, v in train_step(base, 1e-3, 1).items() if k == "a.weight"})
    repo.commit("ours", ours)
    repo.git("checkout", "-q", "-b", "theirs", "main")
    theirs = dict(base, **{k: v for k, v in train_step(base, 1e-3, 2).items() if k == "b.weight"})
    repo.commit("theirs", theirs)
    theirs2 = dict(
        theirs, **{k: v for k, v in train_step(theirs, 1e-3, 3).items() if k == "b.weight"}
    )
    repo.commit("theirs 2", theirs2)
    assert types(repo.meta()["b.weight"]) == ["delta", "delta"]
    both = dict(ours, **{"b.weight": theirs2["b.weight"]})

    repo.git("checkout", "-q", "-b", "merged", "ours")
    repo.git("merge", "-q", "--no-edit", "theirs")
    assert types(repo.meta()["a.weight"]) == ["delta"]
    assert types(repo.meta()["b.weight"]) == ["delta", "delta"]
    assert same(repo.fresh_checkout(), both)

    repo.git("checkout", "-q", "-b", "picked", "ours")
    repo.git("cherry-pick", "theirs~1", "theirs")  # both deltas of b, onto ours
    assert types(repo.meta()["b.weight"]) == ["delta", "delta"]
    assert same(repo.fresh_checkout(), both)

    repo.git("checkout", "-q", "theirs")
    repo.git("rebase", "-q", "ours")
    assert same(repo.fresh_checkout(), both)
    assert types(repo.meta()["b.weight"]) == ["delta", "delta"]


def test_diff_and_ls_files_show_delta_and_its_stored_bytes(repo: ParamRepo):
    repo.commit("step", train_step(repo.params, 1e-3))
    meta = repo.meta()
    delta_size = meta["a.weight"]["updates"][0]["object"]["size"]

    listing = repo.theta("ls-files", "--params").stdout.decode().splitlines()
    (row,) = [line for line in listing if line.startswith("  a.weight\t")]
    assert row.split("\t")[4:] == ["delta", str(delta_size)]

    out = json.loads(repo.theta("diff", "HEAD~1", "HEAD", "--format", "json").stdout.decode())
    params = {p["name"]: p for p in out["files"][0]["params"]}
    assert params["a.weight"]["update_type"] == "delta"
    assert params["a.weight"]["added_bytes"] == delta_size
    text = repo.theta("diff", "HEAD~1", "HEAD").stdout.decode()
    assert "delta" in text
