"""What `git theta track` checks and reports around its edit of `.gitattributes`.

Tracking before `git theta install` would be silently wrong: git finds no `filter.theta`
driver, so `git add` stores the raw checkpoint and, once installed, `git status` stays clean
and only `git add --renormalize` converts it, leaving the blob in history. So `track` refuses
until the filter is configured, as git-theta 0.2 did. With no pattern it lists the tracked
patterns, as `git lfs track` does.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TextIO

from git_theta.errors import ConfigError
from git_theta.git import attributes
from git_theta.git.repo import Repo

__all__ = ["committed_theta_paths", "list_tracked", "require_installed"]

# Either is enough for git to clean a tracked file (git_theta.git.config.INSTALLED_CONFIG).
_FILTER_KEYS = ("filter.theta.process", "filter.theta.clean")


def require_installed(repo: Repo) -> None:
    """Raise unless git, in this repository, would run git-theta's filter.

    Raises:
        ConfigError: neither `filter.theta.process` nor `filter.theta.clean` is configured at
            any scope; names `git theta install`.
    """
    if any(repo.config_get(key) for key in _FILTER_KEYS):
        return
    raise ConfigError(
        "git-theta is not installed, so git would commit the raw checkpoint: run "
        "`git theta install` (or `git theta install --local` for this repository) first"
    )


def _attributes_files(repo: Repo) -> list[str]:
    listed = repo.git(
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        ":(glob).gitattributes",
        ":(glob)**/.gitattributes",
    ).decode("utf-8", "surrogateescape")
    found = [p for p in dict.fromkeys(listed.split("\0")) if p]
    # The root's file first, then deeper ones: the order git reads them in.
    return sorted(found, key=lambda p: (p.count("/"), p)) or [".gitattributes"]


def list_tracked(repo: Repo, out: TextIO) -> int:
    """Print every pattern the repository's `.gitattributes` files send through git-theta."""
    rows = []
    for name in _attributes_files(repo):
        folder = PurePosixPath(name).parent
        for pattern in attributes.tracked_patterns(repo.worktree / name):
            shown = pattern if str(folder) == "." else f"{folder}/{pattern.lstrip('/')}"
            rows.append(f"    {shown} ({name})\n")
    if not rows:
        out.write('No patterns are tracked; `git theta track "*.safetensors"` adds one.\n')
        return 0
    out.write("Listing tracked patterns\n")
    out.writelines(rows)
    return 0


def committed_theta_paths(repo: Repo) -> set[str]:
    """Files in HEAD that the attributes, as they are now, route through git-theta; read
    before and after an edit, the difference is what `git add --renormalize` would convert."""
    if not repo.has_commit("HEAD"):
        return set()
    names = repo.git("ls-tree", "-r", "-z", "--name-only", "HEAD").decode(
        "utf-8", "surrogateescape"
    )
    paths = [p for p in names.split("\0") if p and PurePosixPath(p).name != ".gitattributes"]
    found = repo.check_attrs(["filter"], paths)
    return {path for path, attrs in found.items() if attrs.get("filter") == "theta"}
