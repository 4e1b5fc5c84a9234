"""Remotes on this machine (no server), the chained pre-push hook, and recovering a clone made
without git-theta."""

from __future__ import annotations

import pytest

from testing.gitenv import GitEnv, store_objects


def _bare_objects(bare) -> set[str]:
    root = bare / "theta" / "objects"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_local_remote_push_and_clone(scratch):
    env = scratch.env
    bare = env.root / "shared" / "model.git"
    env.git("init", "-q", "--bare", str(bare), cwd=env.root)
    scratch.git("remote", "add", "origin", str(bare))  # a plain path
    v1 = scratch.commit("v1")
    scratch.git("push", "-q", "-u", "origin", "main")
    assert _bare_objects(bare) == store_objects(scratch.repo)

    clone = env.root / "clone"
    env.git("clone", "-q", bare.as_uri(), str(clone), cwd=env.root)  # a file:// URL
    assert (clone / "model.safetensors").read_bytes() == v1
    assert store_objects(clone) == _bare_objects(bare)


def test_foreign_pre_push_hook_is_chained_and_both_run(scratch):
    env = scratch.env
    bare = env.root / "origin.git"
    env.git("init", "-q", "--bare", str(bare), cwd=env.root)
    scratch.git("remote", "add", "origin", str(bare))
    hooks = scratch.repo / ".git" / "hooks"
    ours = (hooks / "pre-push").read_text()  # `git theta track` installed it
    (hooks / "pre-push").unlink()
    log = env.root / "foreign.log"
    foreign = f'#!/bin/sh\necho "args: $*" >> {log}\ncat >> {log}\n'
    (hooks / "pre-push").write_text(foreign)
    (hooks / "pre-push").chmod(0o755)

    out = env.theta("install", "--local", cwd=scratch.repo).stdout.decode()
    assert "kept as pre-push.legacy" in out
    assert (hooks / "pre-push.legacy").read_text() == foreign
    assert (hooks / "pre-push").read_text() == ours
    env.theta("install", "--local", cwd=scratch.repo)  # again: nothing moves
    env.theta("track", "*.safetensors", cwd=scratch.repo)
    assert (hooks / "pre-push.legacy").read_text() == foreign

    scratch.commit("v1")
    head = scratch.git("rev-parse", "HEAD").strip()
    scratch.git("push", "-q", "origin", "main")
    text = log.read_text()
    assert text.startswith(f"args: origin {bare}\n")
    assert f"refs/heads/main {head} refs/heads/main " in text
    assert _bare_objects(bare) == store_objects(scratch.repo)

    env.theta("uninstall", "--local", cwd=scratch.repo)
    assert (hooks / "pre-push").read_text() == foreign


def test_a_failing_foreign_hook_stops_the_push(scratch):
    env = scratch.env
    bare = env.root / "origin.git"
    env.git("init", "-q", "--bare", str(bare), cwd=env.root)
    scratch.git("remote", "add", "origin", str(bare))
    legacy = scratch.repo / ".git" / "hooks" / "pre-push.legacy"
    legacy.write_text("#!/bin/sh\necho no >&2\nexit 1\n")
    legacy.chmod(0o755)
    scratch.commit("v1")
    proc = env.run(["git", "push", "-q", "origin", "main"], cwd=scratch.repo, check=False)
    assert proc.returncode != 0
    assert _bare_objects(bare) == set()


@pytest.mark.parametrize("recover", ["checkout -f", "git theta checkout"])
def test_clone_without_git_theta_then_recover(scratch, recover):
    env = scratch.env
    bare = env.root / "origin.git"
    env.git("init", "-q", "--bare", str(bare), cwd=env.root)
    scratch.git("remote", "add", "origin", str(bare))
    v1 = scratch.commit("v1")
    scratch.git("push", "-q", "-u", "origin", "main")

    plain = GitEnv(env.root / "plain", install=False)
    clone = plain.root / "clone"
    plain.git("clone", "-q", str(bare), str(clone), cwd=plain.root)
    assert (clone / "model.safetensors").read_bytes().startswith(b'{\n  "git_theta": ')

    out = plain.theta("install", cwd=clone).stdout.decode()
    assert "1 tracked checkpoint(s) hold metadata" in out
    if recover == "checkout -f":
        plain.git("checkout", "-f", cwd=clone)
    else:
        out = plain.theta("checkout", cwd=clone).stdout.decode()
        assert out == "Checked out 1 checkpoint(s).\n"
    assert (clone / "model.safetensors").read_bytes() == v1
    assert plain.git("status", "--porcelain", cwd=clone) == ""
