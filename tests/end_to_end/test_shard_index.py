"""`git theta check` on Hugging Face sharded checkpoints: the index must agree with its shards."""

from __future__ import annotations

import json

from testing.sharded import INDEX, four_shards, shard_name, tiny_layers, write_sharded


def _repo(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    params = tiny_layers()
    index = write_sharded(repo, params, four_shards(params))
    gitenv.git("add", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", "model", cwd=repo)
    return repo, params, index


def _check(gitenv, repo, *args):
    proc = gitenv.theta("check", *args, cwd=repo, check=False)
    return proc.returncode, proc.stdout.decode().splitlines()


def test_a_consistent_index_passes(gitenv):
    repo, _, _ = _repo(gitenv)
    assert _check(gitenv, repo, "HEAD")[0] == 0


def test_each_disagreement_is_one_line_naming_the_index(gitenv):
    repo, params, index = _repo(gitenv)
    one, four = shard_name(1, 4), shard_name(4, 4)
    index["weight_map"]["ghost.weight"] = one  # named, held nowhere
    del index["weight_map"]["head.weight"]  # held, not named
    index["metadata"]["total_size"] += 1
    (repo / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    gitenv.git("add", INDEX, cwd=repo)
    code, lines = _check(gitenv, repo)
    assert code == 1
    assert lines[:3] == [
        f"{INDEX}: {four} holds 'head.weight', which weight_map does not name",
        f"{INDEX}: weight_map puts 'ghost.weight' in {one}, which does not hold it",
        f"{INDEX}: metadata.total_size is {index['metadata']['total_size']}, "
        f"the shards' tensors hold {sum(a.nbytes for n, (_, a) in params.items()) - 128}",
    ]
    assert lines[3].startswith("git-theta check: 3 violation(s)")


def test_a_missing_shard_and_bad_json_are_one_line_each(gitenv):
    repo, _, _ = _repo(gitenv)
    gitenv.git("rm", "-q", shard_name(2, 4), cwd=repo)
    code, lines = _check(gitenv, repo)
    assert code == 1
    assert lines[0] == f"{INDEX}: shard {shard_name(2, 4)}: missing"
    (repo / INDEX).write_text("{not json")
    gitenv.git("add", INDEX, cwd=repo)
    code, lines = _check(gitenv, repo)
    assert code == 1
    assert lines[0].startswith(f"{INDEX}: not a valid JSON shard index: ")


def test_git_add_warns_when_the_index_disagrees_with_the_shards(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors", "*.safetensors.index.json"))
    params = tiny_layers()
    index = write_sharded(repo, params, four_shards(params))
    proc = gitenv.run(["git", "add", "."], cwd=repo)
    assert b"warning" not in proc.stderr
    gitenv.git("commit", "-q", "-m", "model", cwd=repo)
    index["metadata"]["total_size"] = 7
    (repo / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    proc = gitenv.run(["git", "add", INDEX], cwd=repo)
    total = sum(a.nbytes for _, a in params.values())
    assert proc.stderr.decode().splitlines() == [
        f"git-theta: warning: {INDEX}: metadata.total_size is 7, the shards' tensors hold {total}"
    ]
    # The index is stored as it is: the warning is advice.
    assert gitenv.git("show", f":{INDEX}", cwd=repo) == (repo / INDEX).read_text()
