"""`git theta checkout` restores every tracked checkpoint that is missing or holds metadata,
and names each one it cannot restore."""

from __future__ import annotations

from git_theta import metadata as md
from testing.checkpoints import random_params, write_safetensors

SHAPES = {"w": ("F32", (64, 16)), "b": ("F16", (16,))}


def _commit_three(env, repo) -> dict[str, bytes]:
    data = {}
    for seed, name in enumerate(("a.safetensors", "b.safetensors", "c.safetensors")):
        data[name] = write_safetensors(repo / name, random_params(SHAPES, seed=seed))
    env.git("add", ".", cwd=repo)
    env.git("commit", "-q", "-m", "three", cwd=repo)
    return data


def test_a_deleted_checkpoint_is_restored(scratch):
    v1 = scratch.commit("v1")
    scratch.path.unlink()
    assert scratch.git("status", "--porcelain") == " D model.safetensors\n"
    proc = scratch.env.theta("checkout", cwd=scratch.repo)
    assert proc.stdout.decode() == "Checked out 1 checkpoint(s).\n"
    assert scratch.path.read_bytes() == v1
    assert scratch.git("status", "--porcelain") == ""


def test_a_file_holding_metadata_is_restored(scratch):
    v1 = scratch.commit("v1")
    meta = scratch.env.run(
        ["git", "cat-file", "blob", ":model.safetensors"], cwd=scratch.repo
    ).stdout
    assert md.looks_like_metadata(meta[:64])
    scratch.path.write_bytes(meta)
    proc = scratch.env.theta("checkout", cwd=scratch.repo)
    assert proc.stdout.decode() == "Checked out 1 checkpoint(s).\n"
    assert scratch.path.read_bytes() == v1
    assert scratch.git("status", "--porcelain") == ""


def test_nothing_to_restore_says_so(scratch):
    scratch.commit("v1")
    proc = scratch.env.theta("checkout", cwd=scratch.repo)
    assert proc.stdout.decode() == "Every tracked checkpoint is checked out already.\n"


def test_a_checkpoint_whose_object_is_gone_is_named_and_the_others_are_restored(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    data = _commit_three(gitenv, repo)
    meta = md.decode(gitenv.run(["git", "cat-file", "blob", ":b.safetensors"], cwd=repo).stdout)
    oid = meta.params["w"].object.oid
    (repo / ".git" / "theta" / "objects" / oid[:2] / oid[2:4] / oid).unlink()
    (repo / "a.safetensors").unlink()
    (repo / "b.safetensors").unlink()
    (repo / "c.safetensors").write_bytes(
        gitenv.run(["git", "cat-file", "blob", ":c.safetensors"], cwd=repo).stdout
    )

    proc = gitenv.theta("checkout", cwd=repo, check=False)
    assert proc.returncode == 1
    assert proc.stdout.decode() == "Checked out 2 checkpoint(s).\n"
    errors = proc.stderr.decode().splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "git-theta: error: b.safetensors: not restored, 1 object(s) missing from "
    )
    assert "this repository has no remote" in errors[0]
    assert (repo / "a.safetensors").read_bytes() == data["a.safetensors"]
    assert (repo / "c.safetensors").read_bytes() == data["c.safetensors"]
    assert not (repo / "b.safetensors").exists()
    assert gitenv.git("status", "--porcelain", cwd=repo) == " D b.safetensors\n"


def test_a_checkpoint_left_out_by_a_sparse_checkout_is_not_restored(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    _commit_three(gitenv, repo)
    gitenv.git("sparse-checkout", "set", "--no-cone", "/*", "!/b.safetensors", cwd=repo)
    assert not (repo / "b.safetensors").exists()
    proc = gitenv.theta("checkout", cwd=repo)
    assert proc.stdout.decode() == "Every tracked checkpoint is checked out already.\n"
    assert not (repo / "b.safetensors").exists()
