"""git-theta 0.2's GIT_THETA_* variables become git config through GIT_CONFIG_COUNT."""

from __future__ import annotations

import io
import subprocess

from git_theta.legacy_env import apply


def test_variables_become_config_entries_after_existing_ones():
    env = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "user.name",
        "GIT_CONFIG_VALUE_0": "x",
        "GIT_THETA_UPDATE_TYPE": "sparse",
        "GIT_THETA_CHECKPOINT_TYPE": "pytorch",
        "GIT_THETA_MAX_CONCURRENCY": "4",
        "GIT_THETA_LOG_LEVEL": "debug",
    }
    assert apply(env) == ["theta.format", "theta.updateType", "lfs.concurrenttransfers"]
    assert env["GIT_CONFIG_COUNT"] == "4"
    assert (env["GIT_CONFIG_KEY_1"], env["GIT_CONFIG_VALUE_1"]) == ("theta.format", "pytorch")
    assert (env["GIT_CONFIG_KEY_3"], env["GIT_CONFIG_VALUE_3"]) == ("lfs.concurrenttransfers", "4")
    assert env["GIT_THETA_TRACE"] == "1"
    assert apply(env) == []  # a child git-theta does not add them again
    assert env["GIT_CONFIG_COUNT"] == "4"
    # git itself reads them.
    out = subprocess.run(
        ["git", "config", "--get", "theta.updateType"], env=env, capture_output=True, check=True
    )
    assert out.stdout == b"sparse\n"


def test_unbounded_concurrency_is_left_out_and_update_data_warns():
    env = {"GIT_THETA_MAX_CONCURRENCY": "-1", "GIT_THETA_UPDATE_DATA_PATH": "side.pt"}
    warn = io.StringIO()
    assert apply(env, warn=warn) == []
    assert "GIT_CONFIG_COUNT" not in env
    assert warn.getvalue().startswith("git-theta: warning: GIT_THETA_UPDATE_DATA_PATH")
