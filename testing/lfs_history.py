"""Repositories whose checkpoints are on Git LFS, as `git theta migrate` finds them."""

from __future__ import annotations

from pathlib import Path

from testing.gitenv import GitEnv

__all__ = ["commit_all", "init_lfs_repo"]


def init_lfs_repo(env: GitEnv, name: str, *patterns: str) -> Path:
    """A new repository `name` under `env.root` with Git LFS installed in it (not globally) and
    `patterns` tracked by `git lfs track`."""
    repo = env.root / name
    env.git("init", "-q", str(repo), cwd=env.root)
    env.run(["git", "lfs", "install", "--local"], cwd=repo)
    for pattern in patterns:
        env.run(["git", "lfs", "track", pattern], cwd=repo)
    return repo


def commit_all(env: GitEnv, repo: Path, message: str) -> str:
    """Stage everything, commit, and return the commit id."""
    env.git("add", ".", cwd=repo)
    env.git("commit", "-q", "-m", message, cwd=repo)
    return env.git("rev-parse", "HEAD", cwd=repo).strip()
