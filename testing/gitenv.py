"""Real git in scratch repositories, isolated from the machine's own git configuration."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["GitEnv"]


class GitEnv:
    """A HOME and global git config of its own under `root`, with git-theta installed there.

    Every command runs with that environment, so tests never read or write the user's config.
    """

    def __init__(self, root: Path, *, install: bool = True) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("GIT_") and k not in ("HOME", "XDG_CONFIG_HOME")
        }
        self.env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            GIT_CONFIG_GLOBAL=str(self.home / ".gitconfig"),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="Test Author",
            GIT_AUTHOR_EMAIL="author@example.com",
            GIT_COMMITTER_NAME="Test Committer",
            GIT_COMMITTER_EMAIL="committer@example.com",
            GIT_TERMINAL_PROMPT="0",
        )
        self.git("config", "--global", "init.defaultBranch", "main", cwd=root)
        self.git("config", "--global", "user.name", "Test User", cwd=root)
        self.git("config", "--global", "user.email", "test@example.com", cwd=root)
        self.git("config", "--global", "advice.detachedHead", "false", cwd=root)
        if install:
            self.run(["git-theta", "install"], cwd=root)

    def run(
        self,
        args: list[str],
        *,
        cwd: Path,
        check: bool = True,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{args} failed with {proc.returncode}\nstdout: {proc.stdout.decode(errors='replace')}"
                f"\nstderr: {proc.stderr.decode(errors='replace')}"
            )
        return proc

    def git(self, *args: str, cwd: Path, check: bool = True, **kw: object) -> str:
        proc = self.run(["git", *args], cwd=cwd, check=check, **kw)  # type: ignore[arg-type]
        return proc.stdout.decode("utf-8", "replace")

    def theta(
        self, *args: str, cwd: Path, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return self.run(["git-theta", *args], cwd=cwd, check=check)

    def init_repo(self, name: str = "repo", *, track: tuple[str, ...] = ()) -> Path:
        path = self.root / name
        self.git("init", "-q", str(path), cwd=self.root)
        if track:
            self.theta("track", *track, cwd=path)
            self.git("commit", "-q", "-m", "track checkpoints", cwd=path)
        return path


def store_objects(repo: Path) -> set[str]:
    """Names of the objects in a repository's local store."""
    root = repo / ".git" / "theta" / "objects"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()
