"""A corrupt copy on disk is replaced from the remote, never trusted: `git theta fetch`
verifies what it finds present, and a checkout that meets a corrupt object downloads it again."""

from __future__ import annotations

import hashlib

from git_theta import metadata as md
from testing.store_files import flip_byte, object_path


def _oid(scratch, name: str) -> str:
    blob = scratch.git("show", "HEAD:model.safetensors").encode()
    return md.decode(blob).params[name].object.oid


def _intact(scratch, oid: str) -> bool:
    return hashlib.sha256(object_path(scratch.repo, oid).read_bytes()).hexdigest() == oid


def test_fetch_replaces_a_corrupt_object(pushed):
    scratch = pushed
    oid = _oid(pushed, "embed.weight")
    flip_byte(object_path(scratch.repo, oid))
    damaged = object_path(scratch.repo, oid).read_bytes()

    out = scratch.env.theta("fetch", cwd=scratch.repo).stdout.decode().splitlines()
    bad = scratch.repo / ".git" / "theta" / "bad" / oid
    assert out[0] == f"Object {oid} failed verification; moved it to {bad}."
    assert out[1].startswith("Downloaded 1 object(s)")
    total = len(md.decode(scratch.git("show", "HEAD:model.safetensors").encode()).objects())
    assert out[1].endswith(f"; {total - 1} of {total} were present and verified already.")
    assert _intact(scratch, oid) and bad.read_bytes() == damaged
    # A second fetch finds everything intact and downloads nothing.
    again = scratch.env.theta("fetch", cwd=scratch.repo).stdout.decode()
    assert again.startswith("Downloaded 0 object(s)")


def test_checkout_replaces_a_corrupt_object_and_writes_the_right_bytes(pushed):
    scratch = pushed
    v2 = scratch.path.read_bytes()
    oid = _oid(pushed, "layers.0.mlp.weight")
    flip_byte(object_path(scratch.repo, oid))
    scratch.path.unlink()
    proc = scratch.env.run(["git", "checkout", "--", "model.safetensors"], cwd=scratch.repo)
    assert proc.returncode == 0
    assert scratch.path.read_bytes() == v2
    assert _intact(scratch, oid)
    assert (scratch.repo / ".git" / "theta" / "bad" / oid).exists()


def test_without_a_remote_a_corrupt_object_stays_and_is_reported(scratch):
    scratch.commit("v1")
    oid = _oid(scratch, "layers.0.mlp.weight")
    flip_byte(object_path(scratch.repo, oid))
    scratch.path.unlink()
    proc = scratch.env.run(
        ["git", "checkout", "--", "model.safetensors"], cwd=scratch.repo, check=False
    )
    assert proc.returncode != 0
    assert "model.safetensors: parameter 'layers.0.mlp.weight'" in proc.stderr.decode()
    assert f"object {oid} is corrupt" in proc.stderr.decode()
    assert object_path(scratch.repo, oid).exists()  # left in place: evidence for fsck


def test_checkout_replaces_a_copy_cut_short(pushed):
    scratch = pushed
    v2 = scratch.path.read_bytes()
    oid = _oid(pushed, "embed.weight")
    path = object_path(scratch.repo, oid)
    path.write_bytes(path.read_bytes()[:100])
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == v2
    assert _intact(scratch, oid)
