"""Merging branches of a Hugging Face sharded checkpoint: shards per parameter, the index
(`model.safetensors.index.json`) by its own driver, and the result loads as one model."""

from __future__ import annotations

import json

import numpy as np

from testing.sharded import INDEX, four_shards, load_sharded, shard_name, tiny_layers, write_sharded


def _setup(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors", "*.safetensors.index.json"))
    assert (
        "*.safetensors.index.json filter=theta-index merge=theta-index\n"
        in (repo / ".gitattributes").read_text()
    )
    params = tiny_layers()
    groups = four_shards(params)
    write_sharded(repo, params, groups)
    gitenv.git("add", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", "model", cwd=repo)
    return repo, params, groups


def _commit(gitenv, repo, message):
    gitenv.git("add", "-A", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", message, cwd=repo)


def test_two_branches_changing_different_layers_merge_into_one_consistent_model(gitenv):
    repo, params, groups = _setup(gitenv)
    gitenv.git("checkout", "-q", "-b", "a", cwd=repo)
    a = dict(params)
    a["layers.0.weight"] = ("F32", a["layers.0.weight"][1] + 1)
    a["layers.0.scale"] = ("F32", np.full(8, 3, "<f4"))  # both sides change total_size
    # save_pretrained moves tensors between shards when sizes shift: layers.1.bias -> shard 3.
    moved = [list(g) for g in groups]
    moved[1].remove("layers.1.bias")
    moved[2].append("layers.1.bias")
    moved[0].append("layers.0.scale")
    write_sharded(repo, a, moved)
    _commit(gitenv, repo, "a: layer 0, move a bias")

    gitenv.git("checkout", "-q", "main", cwd=repo)
    gitenv.git("checkout", "-q", "-b", "b", cwd=repo)
    b = dict(params)
    b["embed.weight"] = ("F32", b["embed.weight"][1] * 2)
    b["layers.3.weight"] = ("F32", b["layers.3.weight"][1] - 1)
    b["extra.scale"] = ("F32", np.ones(8, "<f4"))
    grown = [list(g) for g in groups]
    grown[3].append("extra.scale")
    write_sharded(repo, b, grown)
    _commit(gitenv, repo, "b: embedding, layer 3, a new tensor")

    gitenv.git("merge", "-q", "--no-edit", "a", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    model = load_sharded(repo)
    expected = {n: v for n, (_, v) in b.items()}
    expected.update({n: a[n][1] for n in ("layers.0.weight", "layers.0.scale")})
    assert model.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(model[name], value, err_msg=name)
    index = json.loads((repo / INDEX).read_text())
    assert index["weight_map"]["layers.1.bias"] == shard_name(3, 4)
    assert index["weight_map"]["extra.scale"] == shard_name(4, 4)
    assert index["weight_map"]["layers.0.scale"] == shard_name(1, 4)
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in expected.values())
    assert gitenv.theta("check", "HEAD~1..HEAD", cwd=repo, check=False).returncode == 0


def test_a_tensor_moved_to_different_shards_on_both_sides_is_a_conflict(gitenv):
    repo, params, groups = _setup(gitenv)
    for branch, target in (("a", 2), ("b", 3)):
        gitenv.git("checkout", "-q", "-b", branch, "main", cwd=repo)
        moved = [list(g) for g in groups]
        moved[0].remove("embed.weight")
        moved[target].append("embed.weight")
        write_sharded(repo, params, moved)
        _commit(gitenv, repo, f"{branch}: move the embedding")
    proc = gitenv.run(["git", "merge", "--no-edit", "a"], cwd=repo, check=False)
    assert proc.returncode != 0
    assert b"moved to different shards on both sides: embed.weight" in proc.stderr + proc.stdout
    text = (repo / INDEX).read_text()
    assert (
        "<<<<<<< ours\n"
        f'    "embed.weight": "{shard_name(4, 4)}",\n'
        "=======\n"
        f'    "embed.weight": "{shard_name(3, 4)}",\n'
        ">>>>>>> theirs\n"
    ) in text


def _both_add_the_same_tensor(gitenv):
    """Branches a and b each change a different layer and add the same new tensor to shard
    4, and a moves a bias to shard 3 (so the indexes differ and git runs the driver):
    summing the sides' totals would count the new tensor twice."""
    repo, params, groups = _setup(gitenv)
    extra = np.arange(16, dtype="<f4")
    sides = {}
    for branch, layer in (("a", 0), ("b", 3)):
        grown = [list(g) for g in groups]
        grown[3].append("extra.bias")
        if branch == "a":
            grown[1].remove("layers.1.bias")
            grown[2].append("layers.1.bias")
        gitenv.git("checkout", "-q", "-b", branch, "main", cwd=repo)
        side = dict(params)
        name = f"layers.{layer}.weight"
        side[name] = ("F32", side[name][1] + 1)
        side["extra.bias"] = ("F32", extra)
        index = write_sharded(repo, side, grown)
        # As transformers 5 writes it; merged like total_size.
        index["metadata"]["total_parameters"] = sum(v.size for _, v in side.values())
        (repo / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        _commit(gitenv, repo, f"{branch}: layer {layer} and extra.bias")
        sides[branch] = side
    expected = {n: v for n, (_, v) in sides["b"].items()}
    expected["layers.0.weight"] = sides["a"]["layers.0.weight"][1]
    return repo, expected


def _assert_one_model(gitenv, repo, expected):
    model = load_sharded(repo)
    assert model.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(model[name], value, err_msg=name)
    index = json.loads((repo / INDEX).read_text())
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in expected.values())
    assert index["metadata"]["total_parameters"] == sum(v.size for v in expected.values())
    assert gitenv.theta("check", "HEAD~1..HEAD", cwd=repo).returncode == 0


def test_total_size_after_a_merge_is_that_of_the_merged_shards(gitenv):
    repo, expected = _both_add_the_same_tensor(gitenv)
    gitenv.git("merge", "-q", "--no-edit", "a", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    _assert_one_model(gitenv, repo, expected)


def test_total_size_after_a_rebase_is_that_of_the_rebased_shards(gitenv):
    repo, expected = _both_add_the_same_tensor(gitenv)
    gitenv.git("rebase", "-q", "a", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    _assert_one_model(gitenv, repo, expected)


def test_total_size_after_a_cherry_pick_is_that_of_the_picked_shards(gitenv):
    """A lone pick names its commit only on the command line (no GITHEAD_, no todo list)."""
    repo, expected = _both_add_the_same_tensor(gitenv)
    gitenv.git("cherry-pick", "a", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    _assert_one_model(gitenv, repo, expected)


def test_total_size_after_picking_several_commits_is_that_of_the_picked_shards(gitenv):
    repo, expected = _both_add_the_same_tensor(gitenv)
    gitenv.git("checkout", "-q", "a", cwd=repo)
    (repo / "notes.txt").write_text("notes\n")
    _commit(gitenv, repo, "a: notes")
    gitenv.git("checkout", "-q", "b", cwd=repo)
    gitenv.git("cherry-pick", "a~1", "a", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    assert (repo / "notes.txt").exists()
    gitenv.git("reset", "-q", "--soft", "HEAD~1", cwd=repo)  # the notes commit: check the pick
    gitenv.git("stash", "-q", cwd=repo)
    _assert_one_model(gitenv, repo, expected)


def test_total_size_after_a_stash_pop_is_that_of_the_stashed_shards(gitenv):
    """`git stash pop` merges the stash into HEAD against the commit it was made on."""
    repo, expected = _both_add_the_same_tensor(gitenv)
    gitenv.git("checkout", "-q", "a~0", cwd=repo)
    gitenv.git("reset", "-q", "--soft", "main", cwd=repo)  # a's change, uncommitted, on main
    gitenv.git("stash", "-q", cwd=repo)
    gitenv.git("checkout", "-q", "b", cwd=repo)
    gitenv.git("stash", "pop", "-q", cwd=repo)
    _commit(gitenv, repo, "a's change, from the stash")
    _assert_one_model(gitenv, repo, expected)
