from __future__ import annotations

from pathlib import Path

import pytest

from testing.gitenv import GitEnv


@pytest.fixture
def gitenv(tmp_path: Path) -> GitEnv:
    """An isolated HOME/global config with git-theta installed."""
    return GitEnv(tmp_path)
