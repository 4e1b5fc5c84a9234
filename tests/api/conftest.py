from __future__ import annotations

import os
from pathlib import Path

import pytest

from testing.gitenv import GitEnv


@pytest.fixture
def api_repo(gitenv: GitEnv, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository tracking `*.safetensors`, `*.pt` and `*.npz`, made the current directory,
    with this process's environment switched to the GitEnv's (isolated HOME and git config),
    so in-process API calls and the git processes they start see only the scratch setup."""
    repo = gitenv.init_repo(track=("*.safetensors", "*.pt", "*.npz"))
    for key in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(key)
    for key, value in gitenv.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo)
    return repo
