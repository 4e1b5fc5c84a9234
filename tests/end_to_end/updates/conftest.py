from __future__ import annotations

import pytest

from testing.gitenv import GitEnv
from testing.model_repo import ModelRepo


@pytest.fixture
def model_repo(gitenv: GitEnv) -> ModelRepo:
    return ModelRepo(gitenv)
