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
    "c.weight": ("F16", (256, 256)),
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


def test_delta_versions_are_taken_against_the_snapshot_and_compact_at_the_limit(repo: ParamRepo):
    repo.git("config", "theta.maxUpdateChain", "3")
    snapshot = repo.meta()["a.weight"]
    versions = [repo.params]
    for step in range(1, 5):
        versions.append(train_step(versions[-1], 1e-3, seed=step))
        repo.commit(f"step {step}", versions[-1])
    entries = [repo.meta(f"HEAD~{4 - i}")["a.weight"] for i in range(1, 5)]
    # Each version is one delta against the snapshot (a checkout reads two objects however
    # many versions came since), counted by `link`; the 4th exceeds the limit of 3.
    assert [types(e) for e in entries] == [["delta"]] * 3 + [[]]
    assert [e["updates"][0]["link"] for e in entries[:3]] == [1, 2, 3]
    for entry in entries[:3]:
        assert entry["object"] == snapshot["object"]
        assert entry["updates"][0]["base"] == snapshot["hash"]
    assert entries[3]["object"] != snapshot["object"]  # the new snapshot
    assert len({e["updates"][0]["object"]["oid"] for e in entries[:3]}) == 3
    for i, version in enumerate(versions):
        repo.git("checkout", "-q", f"HEAD~{4 - i}" if i < 4 else "main")
        assert same(repo.fresh_checkout(), version), i
        repo.git("checkout", "-q", "main")
    # The version after the new snapshot is a delta against it.
    repo.commit("step 5", train_step(versions[-1], 1e-3, seed=5))
    entry = repo.meta()["a.weight"]
    assert types(entry) == ["delta"] and entry["object"] == entries[3]["object"]
    assert entry["updates"][0]["link"] == 1


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
    assert types(repo.meta()["b.weight"]) == ["delta"]  # against the snapshot
    assert repo.meta()["b.weight"]["updates"][0]["link"] == 2
    both = dict(ours, **{"b.weight": theirs2["b.weight"]})

    repo.git("checkout", "-q", "-b", "merged", "ours")
    repo.git("merge", "-q", "--no-edit", "theirs")
    assert types(repo.meta()["a.weight"]) == ["delta"]
    assert types(repo.meta()["b.weight"]) == ["delta"]
    assert same(repo.fresh_checkout(), both)

    repo.git("checkout", "-q", "-b", "picked", "ours")
    repo.git("cherry-pick", "theirs~1", "theirs")  # both delta versions of b, onto ours
    assert types(repo.meta()["b.weight"]) == ["delta"]
    assert same(repo.fresh_checkout(), both)

    repo.git("checkout", "-q", "theirs")
    repo.git("rebase", "-q", "ours")
    assert same(repo.fresh_checkout(), both)
    assert types(repo.meta()["b.weight"]) == ["delta"]


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


def test_a_tensor_of_several_pages_is_stored_as_a_delta_and_checks_out_exactly(gitenv: GitEnv):
    # 4.5 MiB of F32 and 2.3 MiB of BF16: the filter reads them in 4 MiB pages, and the XOR is
    # taken page by page into the decoded snapshot, its blocks encoded on two threads.
    repo = ParamRepo(gitenv, {"big": ("F32", (1152, 1024)), "half": ("BF16", (1152, 1024))})
    repo.commit("base")
    repo.git("config", "theta.updateType", "auto")
    v1 = repo.meta()
    v2 = train_step(repo.params, 1e-3)
    repo.commit("step 1", v2)
    meta = repo.meta()
    for name in ("big", "half"):
        assert types(meta[name]) == ["delta"], name
        assert meta[name]["object"] == v1[name]["object"]
        assert meta[name]["updates"][0]["base"] == v1[name]["hash"]
    assert same(repo.fresh_checkout(), v2)
    assert repo.git("status", "--porcelain") == ""
