"""Everyday git commands behave on a tracked checkpoint as they do on any file."""

from __future__ import annotations

from testing.gitenv import store_objects


def test_switch_between_branches(scratch):
    v1 = scratch.commit("v1")
    scratch.git("switch", "-q", "-c", "finetune")
    v2 = scratch.commit("v2", scratch.edited("embed.weight"))
    scratch.git("switch", "-q", "main")
    assert scratch.path.read_bytes() == v1
    scratch.git("switch", "-q", "finetune")
    assert scratch.path.read_bytes() == v2


def test_stash_and_pop(scratch):
    v1 = scratch.commit("v1")
    v2 = scratch.write(scratch.edited("norm.scale"))
    scratch.git("stash", "-q")
    assert scratch.path.read_bytes() == v1
    assert scratch.git("status", "--porcelain") == ""
    scratch.git("stash", "pop", "-q")
    assert scratch.path.read_bytes() == v2


def test_reset_hard_and_restore(scratch):
    v1 = scratch.commit("v1")
    scratch.write(scratch.edited("norm.scale"))
    scratch.git("reset", "-q", "--hard")
    assert scratch.path.read_bytes() == v1
    scratch.write(scratch.edited("embed.weight"))
    scratch.git("restore", "model.safetensors")
    assert scratch.path.read_bytes() == v1
    scratch.git("add", "model.safetensors")
    scratch.git("restore", "--staged", "--worktree", "model.safetensors")
    assert scratch.path.read_bytes() == v1


def test_cherry_pick_of_a_checkpoint_change(scratch):
    scratch.commit("v1")
    base = dict(scratch.params)
    scratch.git("switch", "-q", "-c", "side")
    side = scratch.commit("side", scratch.edited("norm.scale"))
    scratch.git("switch", "-q", "main")
    scratch.params = base
    scratch.git("cherry-pick", "side")
    assert scratch.path.read_bytes() == side
    assert scratch.git("status", "--porcelain") == ""


def test_rebase_of_checkpoint_commits(scratch):
    scratch.commit("v1")
    base = dict(scratch.params)
    scratch.git("switch", "-q", "-c", "topic")
    scratch.commit("topic edits norm", scratch.edited("norm.scale"))
    topic = scratch.params
    scratch.git("switch", "-q", "main")
    scratch.params = base
    (scratch.repo / "README").write_text("notes\n")
    scratch.git("add", "README")
    scratch.git("commit", "-q", "-m", "unrelated")
    scratch.git("switch", "-q", "topic")
    scratch.git("rebase", "-q", "main")
    assert (scratch.repo / "README").exists()
    expected = scratch.repo / "expected.safetensors"
    from testing.checkpoints import write_safetensors

    assert scratch.path.read_bytes() == write_safetensors(
        expected, topic, metadata={"format": "pt"}
    )


def test_merge_of_changes_to_different_parameters(scratch):
    scratch.commit("v1")
    base = dict(scratch.params)
    scratch.git("switch", "-q", "-c", "a")
    scratch.commit("a edits embed", scratch.edited("embed.weight"))
    embed = scratch.params["embed.weight"]
    scratch.git("switch", "-q", "main")
    scratch.params = base
    scratch.commit("main edits norm", scratch.edited("norm.scale"))
    scratch.git("merge", "-q", "--no-edit", "a")
    from git_theta.formats.safetensors import SafetensorsFormat

    merged = SafetensorsFormat().load(scratch.path)
    assert bytes(merged["embed.weight"].data) == embed[1].tobytes()
    assert bytes(merged["norm.scale"].data) == scratch.params["norm.scale"][1].tobytes()
    assert scratch.git("status", "--porcelain") == ""


def test_objects_are_shared_by_identical_tensors_across_commits(scratch):
    scratch.commit("v1")
    count = len(store_objects(scratch.repo))
    scratch.git("commit", "-q", "--allow-empty", "-m", "empty")
    scratch.path.touch()
    scratch.git("add", "model.safetensors")
    assert len(store_objects(scratch.repo)) == count
