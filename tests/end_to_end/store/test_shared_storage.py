"""`theta.storage`: several repositories, one store; and local clones that hard-link objects."""

from __future__ import annotations

import os
import subprocess

import numpy as np

from git_theta import metadata as md
from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import store_objects

SHAPES = {f"layer{i}.weight": ("F32", (128, 64)) for i in range(6)}


def _refs(env, repo) -> set[str]:
    blob = env.run(["git", "cat-file", "blob", "HEAD:model.safetensors"], cwd=repo).stdout
    return {ref.oid for ref in md.decode(blob).objects()}


def _files(root) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file()}


def test_two_repositories_sharing_a_store_add_fine_tunes_of_one_base_at_once(gitenv):
    shared = gitenv.home / "models-store"
    shared.mkdir()
    base = random_params(SHAPES)
    repos, data = [], []
    for name, setting in (("a", "../../home/models-store"), ("b", "~/models-store")):
        # a relative path is taken from the common git dir (repo/.git); `~` is expanded
        repo = gitenv.init_repo(name, track=("*.safetensors",))
        gitenv.git("config", "theta.storage", setting, cwd=repo)
        tuned = dict(base)
        changed = f"layer{len(repos)}.weight"
        tuned[changed] = ("F32", base[changed][1] + np.float32(0.5 + len(repos)))
        data.append(write_safetensors(repo / "model.safetensors", tuned))
        repos.append(repo)
    procs = [
        subprocess.Popen(["git", "add", "model.safetensors"], cwd=r, env=gitenv.env) for r in repos
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    for repo in repos:
        gitenv.git("commit", "-q", "-m", "fine-tune", cwd=repo)

    a, b = (_refs(gitenv, r) for r in repos)
    # Each changed one tensor of the base: the other four and the layout are one set of objects.
    assert len(a & b) == len(SHAPES) - 2 + 1
    assert _files(shared / "objects") == a | b  # each object once
    for repo, content in zip(repos, data, strict=True):
        assert store_objects(repo) == set()  # nothing in the repository's own git dir
        (repo / "model.safetensors").unlink()
        gitenv.git("checkout", "--", "model.safetensors", cwd=repo)
        assert (repo / "model.safetensors").read_bytes() == content


def test_a_local_clone_hard_links_the_origins_objects(scratch):
    v1 = scratch.commit("v1")
    clone = scratch.env.root / "clone"
    scratch.env.git("clone", "-q", str(scratch.repo), str(clone), cwd=scratch.env.root)
    assert (clone / "model.safetensors").read_bytes() == v1
    ours = clone / ".git" / "theta" / "objects"
    theirs = scratch.repo / ".git" / "theta" / "objects"
    names = _files(ours)
    assert names and names == _files(theirs)
    for path in ours.rglob("*"):
        if path.is_file():
            mine, origin = path.stat(), (theirs / path.relative_to(ours)).stat()
            assert (mine.st_dev, mine.st_ino) == (origin.st_dev, origin.st_ino)
            assert mine.st_nlink >= 2
    assert not any(p.is_file() for p in (clone / ".git" / "theta" / "tmp").rglob("*"))


def test_a_corrupt_origin_object_is_not_linked(scratch):
    scratch.commit("v1")
    victim = next(
        p for p in (scratch.repo / ".git" / "theta" / "objects").rglob("*") if p.is_file()
    )
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 0xFF
    victim.write_bytes(bytes(blob))
    clone = scratch.env.root / "clone"
    proc = scratch.env.run(
        ["git", "clone", "-q", str(scratch.repo), str(clone)], cwd=scratch.env.root, check=False
    )
    assert proc.returncode != 0
    assert "do not match the oid" in proc.stderr.decode()
    assert victim.name not in store_objects(clone)


def test_a_local_remote_with_its_own_theta_storage(scratch):
    # The origin keeps its objects in a store of its own; a clone finds them through the
    # origin's config, even though git runs the download with GIT_DIR set to the clone.
    store = scratch.env.root / "origin-store"
    store.mkdir()
    scratch.git("config", "theta.storage", str(store))
    v1 = scratch.commit("v1")
    assert store_objects(scratch.repo) == set() and _files(store / "objects")
    clone = scratch.env.root / "clone"
    scratch.env.git("clone", "-q", str(scratch.repo), str(clone), cwd=scratch.env.root)
    assert (clone / "model.safetensors").read_bytes() == v1
    assert store_objects(clone) == _files(store / "objects")
    one = next(p for p in (clone / ".git" / "theta" / "objects").rglob("*") if p.is_file())
    assert os.stat(one).st_nlink >= 2
