"""A sharded checkpoint is one model in `git theta diff`: a tensor moved between shards is
reported as moved, with nothing new stored."""

from __future__ import annotations

import json

from git_theta import metadata as md
from testing.gitenv import store_objects
from testing.sharded import four_shards, shard_name, tiny_layers, write_sharded


def test_a_tensor_moved_between_shards_is_moved_not_added_and_removed(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    params = tiny_layers()
    groups = four_shards(params)
    write_sharded(repo, params, groups)
    gitenv.git("add", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", "model", cwd=repo)
    before = store_objects(repo)

    groups[2].remove("layers.2.bias")
    groups[1].append("layers.2.bias")
    write_sharded(repo, params, groups)
    gitenv.git("add", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", "move a bias", cwd=repo)
    # Only the two shards' headers are new; the moved tensor's object is reused.
    layouts = {
        md.decode(gitenv.git("show", f"HEAD:{shard_name(k, 4)}", cwd=repo).encode()).layout
        for k in (2, 3)
    }
    assert store_objects(repo) - before == {entry.object.oid for entry in layouts if entry}

    out = gitenv.theta("diff", "HEAD~1", "HEAD", cwd=repo).stdout.decode()
    summary = next(line for line in out.splitlines() if line.startswith("model-*-of-*"))
    # The two shards that changed, as one: nothing new stored.
    assert summary == "model-*-of-*.safetensors: 1 moved, 3 unchanged (4 -> 4 params)"
    row = next(line for line in out.splitlines() if "layers.2.bias" in line)
    assert row.split()[0] == "moved"
    assert "model-00003-of-00004.safetensors -> model-00002-of-00004.safetensors" in row
    report = json.loads(gitenv.theta("diff", "--format", "json", "HEAD~1", "HEAD", cwd=repo).stdout)
    (entry,) = report["files"]
    assert [(p["name"], p["status"], p["added_bytes"]) for p in entry["params"]] == [
        ("layers.2.bias", "moved", 0)
    ]
    # A frozen parameter may move between shards: its bytes did not change.
    proc = gitenv.theta("check", "--frozen", "layers.2.*", "HEAD~1..HEAD", cwd=repo, check=False)
    assert proc.returncode == 0, proc.stdout


def test_ls_files_lists_a_sharded_checkpoint_as_one_model(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    params = tiny_layers()
    write_sharded(repo, params, four_shards(params))
    gitenv.git("add", ".", cwd=repo)
    lines = gitenv.theta("ls-files", cwd=repo).stdout.decode().splitlines()
    assert len(lines) == 5
    assert lines[-1].startswith("model-*-of-*.safetensors\t4 shards\t10 params\t")
