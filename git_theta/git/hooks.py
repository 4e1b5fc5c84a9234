"""The hooks git-theta installs, described as data, and their installer.

Only pre-push for now: it uploads the checkpoint objects of the commits being pushed, so a
remote ref never points at commits whose objects the LFS server lacks. A hook that is already
there and not ours (Git LFS's, pre-commit's, a user's) is moved to `pre-push.legacy` and run
first with the same arguments and input; it is never overwritten. Our own hook, current or an
earlier version, is recognised by its marker line and replaced in place, so installing twice
changes nothing. Model: pre-commit `commands/install_uninstall.py`; git-lfs `lfs/hook.go`.
Hook contract: https://git-scm.com/docs/githooks#_pre_push
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from git_theta.errors import ConfigError
from git_theta.git.repo import Repo

__all__ = ["HOOKS", "Hook", "hooks_dir", "install", "uninstall"]

# Every version of our hooks carries this line; it is how a hook is known to be ours.
MARKER = "# git-theta hook"
LEGACY_SUFFIX = ".legacy"

Outcome = Literal["installed", "updated", "unchanged", "chained", "skipped"]


@dataclass(frozen=True)
class Hook:
    """A hook script: its file name in the hooks directory and its content."""

    name: str
    script: str


PRE_PUSH = Hook(
    "pre-push",
    f"""#!/bin/sh
{MARKER}: pre-push, version 1
# Uploads the checkpoint objects of the commits being pushed to the remote's Git LFS store.
# Written by `git theta install --local` or `git theta track`. A hook that was here before
# is kept as pre-push{LEGACY_SUFFIX} and runs first, with the same arguments and input.
command -v git-theta >/dev/null 2>&1 || {{
  echo >&2 "git-theta: this repository's pre-push hook needs 'git-theta' on PATH" \\
    "(pip install git-theta), or delete $0 to push without checkpoint objects."
  exit 2
}}
input=$(cat)
if [ -x "$0{LEGACY_SUFFIX}" ]; then
  printf '%s' "$input${{input:+
}}" | "$0{LEGACY_SUFFIX}" "$@" || exit $?
fi
printf '%s' "$input${{input:+
}}" | git-theta pre-push "$@"
""",
)

HOOKS: dict[str, Hook] = {PRE_PUSH.name: PRE_PUSH}


def hooks_dir(repo: Repo) -> Path:
    """The directory git runs hooks from (honours core.hooksPath)."""
    rel = repo.git("rev-parse", "--git-path", "hooks").decode().strip()
    base = repo.toplevel or repo.git_dir
    return (base / rel).resolve()


def _is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False


def install(repo: Repo, hook: Hook = PRE_PUSH, *, only_if_absent: bool = False) -> Outcome:
    """Install `hook`, chaining a foreign one found in its place.

    Args:
        only_if_absent: leave any existing hook alone (used when a fresh clone first talks to
            a remote: set the hook up quietly, but never move a user's hook unasked).

    Raises:
        ConfigError: a foreign hook is in place and `<name>.legacy` already holds another.
    """
    directory = hooks_dir(repo)
    path = directory / hook.name
    legacy = directory / (hook.name + LEGACY_SUFFIX)
    outcome: Outcome = "installed"
    if path.exists() or path.is_symlink():
        if only_if_absent:
            return "skipped"
        if _is_ours(path):
            if path.read_text(encoding="utf-8") == hook.script and os.access(path, os.X_OK):
                return "unchanged"
            outcome = "updated"
        else:
            if legacy.exists():
                raise ConfigError(
                    f"{path} is not git-theta's and {legacy} already exists; merge them into "
                    f"{legacy} by hand and delete {path}, then run this again"
                )
            os.replace(path, legacy)
            outcome = "chained"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{hook.name}.git-theta-tmp")
    tmp.write_text(hook.script, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return outcome


def uninstall(repo: Repo, hook: Hook = PRE_PUSH) -> bool:
    """Remove our hook and put a chained one back; True if ours was there."""
    directory = hooks_dir(repo)
    path = directory / hook.name
    if not _is_ours(path):
        return False
    path.unlink()
    legacy = directory / (hook.name + LEGACY_SUFFIX)
    if legacy.exists():
        os.replace(legacy, path)
    return True
