"""Fixtures for a repository that keeps `*.bin` on Git LFS and `*.safetensors` on git-theta.

One template is built per install order and module (`git lfs install` before git-theta, or
after); each test works on its own copy, with its own bare origin and its own repository on a
real Git LFS server (giftless on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from testing.gitenv import GitEnv
from testing.lfs_server import LfsServer
from testing.mixed_repo import ORDERS, Mixed, build


@pytest.fixture(scope="module", params=ORDERS)
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Mixed:
    if shutil.which("git-lfs") is None:
        if os.environ.get("CI"):
            pytest.fail("git-lfs is not installed; the coexistence tests need the real one")
        pytest.skip("git-lfs is not installed")
    return build(tmp_path_factory.mktemp(f"template-{request.param}"), request.param)


@pytest.fixture
def mixed(template: Mixed, tmp_path: Path) -> Mixed:
    """This test's own copy of the template (home, global config and repository)."""
    root = tmp_path / "w"
    shutil.copytree(template.env.root, root, symlinks=True)
    env = GitEnv(root, install=False)  # same layout; the copied global config is kept
    return Mixed(env, root / "repo", template.order, list(template.versions))


@pytest.fixture
def connected(mixed: Mixed, giftless: LfsServer, request: pytest.FixtureRequest) -> Mixed:
    # Unique per test (parameters included), however long its name.
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:48] + "-" + digest
    mixed.connect(giftless, name)
    return mixed
