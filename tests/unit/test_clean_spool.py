"""Clean of a checkpoint that needs a seekable copy (zip formats) closes that copy itself."""

from __future__ import annotations

import gc
import io
from pathlib import Path

import numpy as np
import pytest

from git_theta.clean import Cleaner
from git_theta.context import RepoContext
from git_theta.errors import CheckpointError
from git_theta.git.repo import Repo
from testing.gitenv import GitEnv


def _npz() -> bytes:
    out = io.BytesIO()
    np.savez(out, w=np.arange(6, dtype="<f4"))
    return out.getvalue()


@pytest.mark.parametrize("damaged", [False, True], ids=["accepted", "refused"])
def test_the_spooled_copy_is_closed_not_left_to_the_garbage_collector(
    tmp_path: Path, monkeypatch, damaged
):
    # An unclosed temp file warns when collected; with warnings as errors that fails here.
    env = GitEnv(tmp_path, install=False)
    repo = env.init_repo()
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", env.env["GIT_CONFIG_GLOBAL"])
    content = _npz()
    if damaged:  # a member's .npy header broken, the archive itself intact
        content = content.replace(b"'descr'", b"'descX'")
    with RepoContext(Repo(repo), workers=1) as ctx:
        cleaner = Cleaner(ctx)
        if damaged:
            with pytest.raises(CheckpointError):
                cleaner.clean(io.BytesIO(content), "a.npz")
        else:
            cleaner.clean(io.BytesIO(content), "a.npz")
        cleaner.close()
    gc.collect()
