"""Repositories made before the store had its own place: git-theta's objects in
`.git/lfs/objects`, next to Git LFS's. The first git-theta command moves ours out; Git LFS's
stay; every committed version checks out byte-identical."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import store_objects
from testing.mounts import in_private_mount

SHAPES = {"w": ("F32", (128, 32)), "b": ("F32", (32,)), "e": ("F16", (64, 16))}


def _files(root) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _old_layout_repo(env):
    """A mixed repository as an older git-theta left it: two versions of a checkpoint and a
    Git LFS file, all objects under .git/lfs/objects, nothing under .git/theta."""
    repo = env.root / "repo"
    env.git("init", "-q", str(repo), cwd=env.root)
    env.git("lfs", "install", "--local", "--skip-repo", cwd=repo)
    env.git("lfs", "track", "*.bin", cwd=repo)
    env.theta("track", "*.safetensors", cwd=repo)
    (repo / "data.bin").write_bytes(os.urandom(50_000))
    versions = []
    params = random_params(SHAPES)
    for i in range(2):
        versions.append(write_safetensors(repo / "model.safetensors", params))
        env.git("add", ".", cwd=repo)
        env.git("commit", "-q", "-m", f"v{i}", cwd=repo)
        env.git("tag", f"v{i}", cwd=repo)
        params = {**params, "w": ("F32", params["w"][1] + 1)}
    theta = repo / ".git" / "theta"
    lfs = repo / ".git" / "lfs" / "objects"
    lfs_before = _files(lfs)
    assert len(lfs_before) == 1  # data.bin
    ours = store_objects(repo)
    for path in list((theta / "objects").rglob("*")):
        if path.is_file():
            dest = lfs / path.relative_to(theta / "objects")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, dest)
    shutil.rmtree(theta)
    return repo, versions, ours, lfs_before


def test_old_layout_migrates_on_first_use_and_leaves_git_lfs_alone(gitenv):
    repo, versions, ours, lfs_before = _old_layout_repo(gitenv)
    lfs = repo / ".git" / "lfs" / "objects"
    tmp = repo / ".git" / "lfs" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    stale, fresh, foreign = tmp / "object-killed", tmp / "object-live", tmp / "12345"
    for path in (stale, fresh, foreign):
        path.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))

    # The first git-theta run, one that starts no Git LFS process: Git LFS's own housekeeping
    # deletes temp files older than an hour, which would hide whether we left `foreign` alone.
    gitenv.theta("du", cwd=repo)
    assert store_objects(repo) == ours
    assert _files(lfs) == lfs_before  # Git LFS's object, where and as it was; none of ours
    assert (repo / ".git" / "theta" / "migrated-from-lfs").is_file()
    assert not stale.exists()
    assert fresh.exists() and foreign.exists()  # a live write's, and Git LFS's own

    (repo / "model.safetensors").unlink()
    gitenv.git("checkout", "-q", "v0", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == versions[0]
    for tag, data in zip(("v0", "v1"), versions, strict=True):
        gitenv.git("checkout", "-q", tag, cwd=repo)
        (repo / "model.safetensors").unlink()
        gitenv.git("checkout", "--", "model.safetensors", cwd=repo)
        assert (repo / "model.safetensors").read_bytes() == data
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    fsck = gitenv.run(["git", "lfs", "fsck"], cwd=repo)
    assert "Git LFS fsck OK" in fsck.stdout.decode()


def test_an_object_left_in_both_places_by_an_interrupted_migration_is_fine(gitenv):
    # An interrupted migration (linked, not yet unlinked) leaves an object in both places.
    repo, versions, ours, lfs_before = _old_layout_repo(gitenv)
    lfs = repo / ".git" / "lfs" / "objects"
    some = sorted(ours)[0]
    rel = f"{some[:2]}/{some[2:4]}/{some}"
    dest = repo / ".git" / "theta" / "objects" / rel
    dest.parent.mkdir(parents=True)
    os.link(lfs / rel, dest)
    gitenv.git("checkout", "-q", "v0", cwd=repo)
    assert store_objects(repo) == ours
    assert _files(lfs) == lfs_before
    for tag, data in zip(("v0", "v1"), versions, strict=True):
        gitenv.git("checkout", "-q", tag, cwd=repo)
        (repo / "model.safetensors").unlink()
        gitenv.git("checkout", "--", "model.safetensors", cwd=repo)
        assert (repo / "model.safetensors").read_bytes() == data


def test_migration_into_a_store_on_another_file_system_copies(gitenv):
    repo, versions, ours, lfs_before = _old_layout_repo(gitenv)
    store = gitenv.root / "other-fs-store"
    gitenv.git("config", "theta.storage", str(store), cwd=repo)
    (repo / "model.safetensors").unlink()
    script = (
        "git checkout -q -- model.safetensors && "
        f"find {store}/objects -type f -links 1 -exec sha256sum {{}} +"
    )
    proc = in_private_mount(gitenv, store, script, cwd=repo, size="8m")
    assert proc.returncode == 0, proc.stderr.decode()
    listed = {
        line.split()[1].rsplit("/", 1)[1]: line.split()[0]
        for line in proc.stdout.decode().splitlines()
    }
    assert set(listed) == ours and all(name == digest for name, digest in listed.items())
    assert (repo / "model.safetensors").read_bytes() == versions[1]
    assert _files(repo / ".git" / "lfs" / "objects") == lfs_before


def test_when_objects_cannot_move_reads_fall_back_to_the_old_place(gitenv):
    # The store is on a read-only file system: nothing can move, so every read is served from
    # .git/lfs/objects, one warning says so, and the next command tries again.
    repo, versions, ours, lfs_before = _old_layout_repo(gitenv)
    lfs = repo / ".git" / "lfs" / "objects"
    all_before = _files(lfs)
    store = gitenv.root / "ro-store"
    gitenv.git("config", "theta.storage", str(store), cwd=repo)
    script = " && ".join(
        f"git checkout -q {tag} && rm model.safetensors && git checkout -q -- model.safetensors "
        f"&& sha256sum model.safetensors"
        for tag in ("v0", "v1")
    )
    proc = in_private_mount(gitenv, store, script, cwd=repo, ro=True)
    assert proc.returncode == 0, proc.stderr.decode()
    sums = [line.split()[0] for line in proc.stdout.decode().splitlines()]
    assert sums == [hashlib.sha256(v).hexdigest() for v in versions]
    warnings = [ln for ln in proc.stderr.decode().splitlines() if "could not be moved" in ln]
    assert warnings and warnings[0].startswith(f"git-theta: warning: {len(ours)} object(s)")
    assert _files(lfs) == all_before  # nothing moved, nothing lost
    assert not (repo / ".git" / "theta" / "migrated-from-lfs").exists()


def test_a_clone_of_a_repository_not_yet_migrated_reads_the_old_place(gitenv):
    # The clone downloads from the origin's .git/lfs/objects; the origin is left as it is
    # (it migrates when git-theta next runs in it).
    repo, versions, ours, lfs_before = _old_layout_repo(gitenv)
    all_before = _files(repo / ".git" / "lfs" / "objects")
    clone = gitenv.root / "clone"
    gitenv.git("clone", "-q", str(repo), str(clone), cwd=gitenv.root)
    assert (clone / "model.safetensors").read_bytes() == versions[1]
    assert store_objects(clone) <= ours and store_objects(clone)
    assert _files(repo / ".git" / "lfs" / "objects") == all_before
