"""A store that cannot be written: a full disk (real ENOSPC on a small tmpfs), a file size limit
(real EFBIG), a read-only file system (real EROFS), a `theta.storage` that names no directory.
Each: one line naming the path, a non-zero exit, no temp file, no half-written object, the index
as it was."""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from testing.checkpoints import write_safetensors
from testing.mounts import in_private_mount

# 1 MiB of incompressible tensors: more than the 256 KiB file systems below hold.
BIG = {f"t{i}": ("F32", np.random.default_rng(i).random(64 * 1024).astype("<f4")) for i in range(4)}
# Printed by the script run inside a private mount: git's exit code, then the store's files.
REPORT = "echo exit=$?; cd {store} && find . -type f -exec sha256sum {{}} +"
# A file size limit below one tensor's object, above anything git itself writes here.
FSIZE_LIMIT = 128 * 1024
LIMITED_ADD = (
    "import os, resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({FSIZE_LIMIT}, {FSIZE_LIMIT})); "
    "os.execvp('git', ['git', 'add', 'model.safetensors'])"
)


def _one_line(proc, *parts: str) -> str:
    assert b"Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("git-theta:")]
    assert len(lines) == 1, proc.stderr.decode()
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _assert_nothing_partial(listing: str) -> None:
    """Every file in a `sha256sum` listing of a store is a whole object under objects/."""
    for line in listing.splitlines():
        digest, name = line.split(maxsplit=1)
        assert name.startswith("./objects/"), name  # no temp file under ./tmp
        assert name.rsplit("/", 1)[1] == digest, name


def _assert_store_whole(store) -> None:
    for path in store.rglob("*"):
        if path.is_file():
            assert path.parent.parent.parent.name == "objects", path
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


def test_full_disk_during_add(scratch):
    data = write_safetensors(scratch.path, BIG)
    index = scratch.git("ls-files", "-s")
    store = scratch.repo / ".git" / "theta"
    proc = in_private_mount(
        scratch.env,
        store,
        "git add model.safetensors; " + REPORT.format(store=store),
        cwd=scratch.repo,
    )
    status, _, listing = proc.stdout.decode().partition("\n")
    assert status.startswith("exit=") and status != "exit=0", status
    _one_line(proc, "model.safetensors", f"{store}: No space left on device")
    _assert_nothing_partial(listing)
    assert scratch.git("ls-files", "-s") == index
    assert scratch.path.read_bytes() == data


def test_file_size_limit_during_add(scratch):
    # RLIMIT_FSIZE needs no privilege: writes past it fail with EFBIG, as on a full disk.
    data = write_safetensors(scratch.path, BIG)
    index = scratch.git("ls-files", "-s")
    store = scratch.repo / ".git" / "theta"
    proc = scratch.env.run([sys.executable, "-c", LIMITED_ADD], cwd=scratch.repo, check=False)
    assert proc.returncode != 0
    _one_line(proc, "model.safetensors", f"{store}: File too large")
    _assert_store_whole(store)
    assert scratch.git("ls-files", "-s") == index
    assert scratch.path.read_bytes() == data


def test_read_only_store_directory(scratch):
    # Root ignores permission bits; a read-only file system stops root too.
    store = scratch.env.root / "ro-store"
    scratch.git("config", "theta.storage", str(store))
    write_safetensors(scratch.path, BIG)
    index = scratch.git("ls-files", "-s")
    proc = in_private_mount(
        scratch.env, store, "git add model.safetensors", cwd=scratch.repo, ro=True
    )
    assert proc.returncode != 0
    _one_line(proc, f"{store}: Read-only file system")
    assert scratch.git("ls-files", "-s") == index


def test_full_disk_while_a_clone_downloads(scratch):
    # The clone's store is on another (full) file system: objects are copied, not linked.
    scratch.write(BIG)
    scratch.git("add", "model.safetensors")
    scratch.git("commit", "-q", "-m", "v1")
    store = scratch.env.root / "clone-store"
    clone = scratch.env.root / "clone"
    script = f"git clone -q -c theta.storage={store} {scratch.repo} {clone}; " + REPORT.format(
        store=store
    )
    proc = in_private_mount(scratch.env, store, script, cwd=scratch.env.root)
    status, _, listing = proc.stdout.decode().partition("\n")
    assert status != "exit=0", status
    _one_line(proc, "model.safetensors", f"{store}: No space left on device")
    _assert_nothing_partial(listing)
    # The clone itself is made (git: "Clone succeeded, but checkout failed"): its history is
    # whole, and `git theta checkout` restores the file once there is room.
    head = scratch.git("rev-parse", "HEAD")
    assert scratch.env.git("rev-parse", "HEAD", cwd=clone) == head


def test_a_clone_onto_another_file_system_copies_objects(scratch):
    v1 = scratch.commit("v1")
    store = scratch.env.root / "clone-store"
    clone = scratch.env.root / "clone"
    script = (
        f"git clone -q -c theta.storage={store} {scratch.repo} {clone} && "
        f"cmp {clone}/model.safetensors {scratch.path} && "
        f"find {store}/objects -type f -links 1 | wc -l"
    )
    proc = in_private_mount(scratch.env, store, script, cwd=scratch.env.root, size="8m")
    assert proc.returncode == 0, proc.stderr.decode()
    assert int(proc.stdout) == len(list((scratch.repo / ".git/theta/objects").rglob("*/*/*")))
    assert (clone / "model.safetensors").read_bytes() == v1


def test_theta_storage_that_does_not_exist(scratch):
    v1 = scratch.commit("v1")
    missing = scratch.env.root / "no" / "such" / "store"
    scratch.git("config", "theta.storage", str(missing))
    scratch.write(scratch.edited("norm.scale"))
    index = scratch.git("ls-files", "-s")
    proc = scratch.env.run(["git", "add", "model.safetensors"], cwd=scratch.repo, check=False)
    assert proc.returncode != 0
    _one_line(proc, f"theta.storage {missing} does not exist")
    assert scratch.git("ls-files", "-s") == index
    assert not missing.exists() and not missing.parent.exists()

    scratch.path.unlink()
    theta = scratch.env.theta("checkout", cwd=scratch.repo, check=False)
    assert theta.returncode == 1
    _one_line(theta, f"theta.storage {missing} does not exist")
    scratch.git("config", "--unset", "theta.storage")
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == v1


def test_theta_storage_that_is_a_regular_file(scratch):
    scratch.commit("v1")
    not_a_dir = scratch.env.root / "store-file"
    not_a_dir.write_bytes(b"")
    scratch.git("config", "theta.storage", str(not_a_dir))
    scratch.write(scratch.edited("norm.scale"))
    index = scratch.git("ls-files", "-s")
    proc = scratch.env.run(["git", "add", "model.safetensors"], cwd=scratch.repo, check=False)
    assert proc.returncode != 0
    _one_line(proc, f"theta.storage {not_a_dir} is not a directory")
    assert scratch.git("ls-files", "-s") == index
