"""Repositories whose checkpoints are on Git LFS, as `git theta migrate` finds them."""

from __future__ import annotations

from pathlib import Path

from testing.gitenv import GitEnv

__all__ = ["commit_all", "init_lfs_repo", "published_clone"]


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


def published_clone(env: GitEnv, repo: Path, lfs_url: str) -> Path:
    """Push `repo`'s branches and tags to a bare origin with `lfs_url` in a committed
    `.lfsconfig`, and clone it as `clone` with Git LFS and `side` as a local branch; only the
    checked-out version's LFS object is then held locally, the others are on the server."""
    bare = env.root / "origin.git"
    env.git("init", "-q", "--bare", str(bare), cwd=env.root)
    env.git("remote", "add", "origin", str(bare), cwd=repo)
    env.git("config", "-f", ".lfsconfig", "lfs.url", lfs_url, cwd=repo)
    env.git("add", ".lfsconfig", cwd=repo)
    env.git("commit", "-q", "-m", "lfs server", cwd=repo)
    env.git("push", "-q", "--tags", "origin", "main", "side", cwd=repo)
    clone = env.root / "clone"
    env.git("clone", "-q", str(bare), str(clone), cwd=env.root)
    # Git LFS is installed per repository here, so the clone checks out pointers until then.
    env.run(["git", "lfs", "install", "--local"], cwd=clone)
    # Commits older than the `.lfsconfig` commit check out through this one.
    env.git("config", "lfs.url", lfs_url, cwd=clone)
    env.run(["git", "lfs", "pull"], cwd=clone)
    env.git("branch", "-q", "side", "origin/side", cwd=clone)
    return clone
