"""A bug's crash log goes under the repository's git dir, not the machine's temp dir; outside a
repository it goes to the temp dir. The one-line message says where."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from git_theta.error_handler import EXIT_BUG, error_handler
from testing.gitenv import GitEnv


class Boom(Exception):
    pass


def _crash(capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    with pytest.raises(SystemExit) as exit_info, error_handler():
        raise Boom("something we did not expect")
    assert exit_info.value.code == EXIT_BUG
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    found = re.fullmatch(
        r"git-theta: internal error: Boom: something we did not expect \(details in (.+)\)\n", err
    )
    assert found, err
    return Path(found.group(1)), err


def _isolate(monkeypatch: pytest.MonkeyPatch, env: GitEnv, cwd: Path, tmp: Path) -> None:
    monkeypatch.chdir(cwd)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", env.env["GIT_CONFIG_GLOBAL"])
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(env.root))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # found again, from TMPDIR


def test_crash_log_goes_under_the_git_dir(tmp_path, monkeypatch, capsys):
    env = GitEnv(tmp_path / "env", install=False)
    repo = env.init_repo()
    (repo / "sub").mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    _isolate(monkeypatch, env, repo / "sub", tmp)
    log, _ = _crash(capsys)
    assert log.parent == (repo / ".git" / "theta" / "logs").resolve()
    text = log.read_text()
    assert "Traceback" in text and "Boom: something we did not expect" in text
    assert list(tmp.iterdir()) == []


def test_crash_log_of_a_linked_worktree_goes_under_its_own_git_dir(tmp_path, monkeypatch, capsys):
    env = GitEnv(tmp_path / "env", install=False)
    repo = env.init_repo()
    env.git("commit", "-q", "--allow-empty", "-m", "root", cwd=repo)
    env.git("worktree", "add", "-q", str(tmp_path / "env" / "linked"), cwd=repo)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    _isolate(monkeypatch, env, tmp_path / "env" / "linked", tmp)
    log, _ = _crash(capsys)
    assert log.parent == (repo / ".git" / "worktrees" / "linked" / "theta" / "logs").resolve()
    assert list(tmp.iterdir()) == []


def test_outside_a_repository_the_crash_log_goes_to_the_temp_dir(tmp_path, monkeypatch, capsys):
    env = GitEnv(tmp_path / "env", install=False)
    outside = tmp_path / "env" / "not-a-repo"
    outside.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    _isolate(monkeypatch, env, outside, tmp)
    log, _ = _crash(capsys)
    assert log.parent == tmp
    assert "Boom: something we did not expect" in log.read_text()
