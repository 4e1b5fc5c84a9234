"""Fixtures for store lifecycle tests: a versioned scratch repository, and a real Git LFS
server (giftless on 127.0.0.1) with a bare origin."""

from __future__ import annotations

import re
import time

import pytest

from testing.gitenv import store_objects
from testing.lfs_server import LfsServer


@pytest.fixture
def pushed(scratch, giftless: LfsServer, request: pytest.FixtureRequest):
    """`scratch` with an origin (bare repo + LFS repository on giftless) and v1, v2 pushed."""
    name = "org/" + re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:60]
    bare = scratch.env.root / "origin.git"
    scratch.env.git("init", "-q", "--bare", str(bare), cwd=scratch.env.root)
    scratch.git("remote", "add", "origin", str(bare))
    scratch.git("config", "-f", ".lfsconfig", "lfs.url", giftless.lfs_url(name))
    scratch.git("add", ".lfsconfig")
    scratch.git("commit", "-q", "-m", "lfs server")
    commit_days_ago(scratch, "v1", 10)
    commit_days_ago(scratch, "v2", 9, scratch.edited("embed.weight", "norm.scale"))
    scratch.git("push", "-q", "-u", "origin", "main")
    assert store_objects(scratch.repo) <= giftless.stored(name)
    return scratch


def commit_days_ago(scratch, message: str, days: int, params=None) -> bytes:
    """Commit the checkpoint as `scratch.commit` does, dated `days` ago."""
    data = scratch.write(params)
    scratch.git("add", "model.safetensors")
    when = f"{int(time.time()) - days * 86400} +0000"
    dates = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    scratch.env.run(["git", "commit", "-q", "-m", message], cwd=scratch.repo, env=dates)
    return data
