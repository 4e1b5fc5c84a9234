"""What git-theta needs to know about Git LFS working in the same repository.

A repository may keep some files on Git LFS (`*.bin filter=lfs`) and checkpoints on git-theta
(`*.safetensors filter=theta`). Each side owns its own objects (`.git/lfs/objects` and
`.git/theta/objects`) and both upload over the same batch API, but git has only one
`pre-push` hook. Ours therefore runs `git lfs pre-push` as well when the repository uses Git
LFS and no chained hook does so already (git_theta/git/hooks.py,
git_theta/commands/pre_push.py).

Facts about Git LFS (v3, `lfs/hook.go`, `commands/commands.go`) this module relies on:
- Git LFS's pre-push hook is `#!/bin/sh`, optionally a `command -v git-lfs ... exit N; }`
  guard, then `git lfs pre-push "$@"` (older versions: `git lfs push --stdin ...`).
- Every Git LFS command that works in a repository (install, update, the filters, fetch,
  ...) records `lfs.repositoryformatversion` in the repository's local config.
- `git lfs install`/`update` refuse to replace a hook they do not recognise (exit 2,
  "Hook already exists: pre-push"); with `--force` they overwrite it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from git_theta import settings
from git_theta.errors import ConfigError
from git_theta.git.attributes import line_attributes
from git_theta.git.repo import Repo, run_git

__all__ = ["calls_pre_push", "in_use", "is_lfs_hook", "run_pre_push"]

FORMAT_KEY = settings.LFS_REPOSITORY_FORMAT.name
_SHEBANG = "#!/bin/sh"
_GUARD = re.compile(r"^command -v git-lfs\b")
_HOOK_CALL = re.compile(r'^git lfs (pre-push "\$@"|push --stdin (\$\*|"\$@"))$')
# A line of any shell script that hands the pre-push input to Git LFS.
_CALL_ANYWHERE = re.compile(r"^\s*(exec\s+)?git[ -]lfs\s+(pre-push|push\s+--stdin)\b")
# How many bytes of a hook are read to recognise it (Git LFS itself reads 1 KiB).
_HOOK_READ_LIMIT = 64 * 1024


def read_hook(path: Path) -> str | None:
    """The text of a hook file (bounded), or None when there is none."""
    try:
        with path.open("rb") as f:
            return f.read(_HOOK_READ_LIMIT).decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def is_lfs_hook(text: str) -> bool:
    """True for Git LFS's own pre-push hook, any version it has shipped, and nothing else."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2 or lines[0] != _SHEBANG or not _HOOK_CALL.match(lines[-1]):
        return False
    return all(_GUARD.match(line) for line in lines[1:-1])


def calls_pre_push(text: str) -> bool:
    """True when a hook script runs Git LFS's pre-push itself (so we must not run it twice)."""
    return any(
        _CALL_ANYWHERE.match(line)
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
    )


def _attributes_files(repo: Repo) -> list[Path]:
    files = [repo.common_dir / "info" / "attributes"]  # shared by every work tree
    if repo.toplevel is not None:
        listed = run_git(
            ["ls-files", "-z", "--cached", "--", ":(glob)**/.gitattributes"],
            cwd=repo.toplevel,
            check=False,
        ).stdout
        files += [repo.toplevel / p for p in listed.decode("utf-8", "replace").split("\0") if p]
        files.append(repo.toplevel / ".gitattributes")  # new and not yet staged
    return files


def _mentions_lfs_filter(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any("filter=lfs" in line_attributes(line) for line in text.splitlines())


def in_use(repo: Repo) -> bool:
    """Whether Git LFS works in this repository: it has marked the repository as its own
    (any Git LFS command run here does), or an attributes file routes paths to `filter=lfs`."""
    marked = run_git(
        ["config", "--local", "--get", FORMAT_KEY],
        cwd=repo.toplevel or repo.git_dir,
        check=False,
    )
    if marked.returncode == 0:
        return True
    return any(_mentions_lfs_filter(path) for path in _attributes_files(repo))


def run_pre_push(repo: Repo, args: Sequence[str], data: bytes) -> int:
    """Run `git lfs pre-push ARGS` with the hook's input; its output goes to the terminal.

    Raises:
        ConfigError: git-lfs is not on PATH (Git LFS's own hook fails the push then too).
    """
    if shutil.which("git-lfs") is None:
        raise ConfigError(
            "this repository uses Git LFS but 'git-lfs' is not on PATH, so `git push` cannot "
            "upload its LFS files; install Git LFS (https://git-lfs.com) and push again"
        )
    proc = subprocess.run(
        ["git", "lfs", "pre-push", *args],
        cwd=repo.toplevel or repo.git_dir,
        input=data,
        check=False,
    )
    return proc.returncode
