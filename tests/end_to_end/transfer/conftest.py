"""Fixtures for transfer tests: a real giftless server, a bare origin, clones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testing.gitenv import GitEnv
from testing.lfs_server import LfsServer


class Origin:
    """A bare git repository for refs, and an LFS repository on giftless for objects."""

    def __init__(self, env: GitEnv, server: LfsServer, name: str) -> None:
        self.env = env
        self.server = server
        self.name = f"org/{name}"
        self.bare = env.root / "origin.git"
        env.git("init", "-q", "--bare", str(self.bare), cwd=env.root)
        self.lfs_url = server.lfs_url(self.name)

    def stored(self) -> set[str]:
        return self.server.stored(self.name)

    def refs(self) -> str:
        return self.env.git("for-each-ref", cwd=self.bare)

    def connect(self, repo: Path, *, lfs_url: str | None = None) -> None:
        """Add `origin` to `repo` and commit an .lfsconfig naming the LFS server."""
        self.env.git("remote", "add", "origin", str(self.bare), cwd=repo)
        self.env.git("config", "-f", ".lfsconfig", "lfs.url", lfs_url or self.lfs_url, cwd=repo)
        self.env.git("add", ".lfsconfig", cwd=repo)
        self.env.git("commit", "-q", "-m", "lfs server", cwd=repo)

    def clone(self, name: str, *, env: GitEnv | None = None, check: bool = True):
        env = env or self.env
        target = env.root / name
        proc = env.run(
            ["git", "clone", "-q", str(self.bare), str(target)], cwd=env.root, check=check
        )
        return target if check else proc


@pytest.fixture
def origin(gitenv: GitEnv, giftless: LfsServer, request: pytest.FixtureRequest) -> Origin:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:60]
    return Origin(gitenv, giftless, name)
