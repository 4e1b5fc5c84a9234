"""`git theta --help`, `git help theta` and `git theta help`: a manual page that is installed
with the package and made from the CLI, and a help command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from git_theta.manpage import PAGE, render
from testing.install import pip_install_venv

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_page_is_the_cli_s():
    assert (ROOT / PAGE).read_text(encoding="utf-8") == render(), (
        "man/man1/git-theta.1 is out of date: run `python -m git_theta.manpage`"
    )


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_the_page_renders_without_warnings():
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(ROOT / PAGE)],
        capture_output=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"},
        check=True,
    )
    assert proc.stderr == b""
    text = proc.stdout.decode()
    assert "git theta track [OPTIONS] [PATTERNS]..." in text
    assert "filter-process" not in text  # hidden commands stay hidden


def test_help_command(gitenv, tmp_path):
    top = gitenv.theta("help", cwd=tmp_path).stdout.decode()
    assert top.startswith("Usage: git-theta [OPTIONS] COMMAND [ARGS]...")
    assert "  track " in top
    one = gitenv.theta("help", "track", cwd=tmp_path).stdout.decode()
    assert one.startswith("Usage: git-theta track [OPTIONS] [PATTERNS]...")
    assert "With no PATTERNS, list the tracked patterns." in one
    bad = gitenv.theta("help", "frobnicate", cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert b"no such command 'frobnicate'; `git theta help` lists them" in bad.stderr


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_git_theta_help_shows_the_installed_page(gitenv, tmp_path):
    """After `pip install`, man finds the page through PATH (<prefix>/bin -> share/man)."""
    prefix = tmp_path / "venv"
    pip_install_venv(ROOT, prefix, tmp_path)
    assert (prefix / "share" / "man" / "man1" / "git-theta.1").is_file()
    env = {k: v for k, v in gitenv.env.items() if k not in ("MANPATH", "PAGER", "MANPAGER")}
    env.update(PATH=f"{prefix / 'bin'}{os.pathsep}{env['PATH']}", MANPAGER="cat", MANWIDTH="80")
    where = subprocess.run(["man", "-w", "git-theta"], env=env, capture_output=True, check=True)
    assert where.stdout.decode().strip() == str(prefix / "share" / "man" / "man1" / "git-theta.1")
    for args in (["git", "theta", "--help"], ["git", "help", "theta"]):
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, check=True)
        assert proc.stdout.decode().startswith("GIT-THETA(1)"), proc.stderr
        assert "No manual entry" not in proc.stderr.decode()
