"""The git configuration `git theta install` writes, described as data.

Git runs `filter-process` once per command (all files share one process); `clean`/`smudge`
are the per-file fallback for tools that do not speak the process protocol. `required` makes
a filter failure fail the git command instead of storing the raw checkpoint.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Literal

from git_theta.git.repo import run_git

__all__ = [
    "INSTALLED_CONFIG",
    "by_path",
    "installed_config",
    "PAGER_CONFIG",
    "Scope",
    "install",
    "install_pager",
    "installed",
    "uninstall",
    "uninstall_pager",
]

Scope = Literal["global", "local", "system"]

INSTALLED_CONFIG: dict[str, str] = {
    "filter.theta.process": "git-theta filter-process",
    "filter.theta.clean": "git-theta clean %f",
    "filter.theta.smudge": "git-theta smudge %f",
    "filter.theta.required": "true",
    "merge.theta.name": "git-theta checkpoint merge",
    "merge.theta.driver": "git-theta merge-driver %O %A %B %P",
    "diff.theta.command": "git-theta diff-driver",
    # Shard indexes (`*.safetensors.index.json merge=theta-index`): weight_map per parameter.
    "merge.theta-index.name": "git-theta shard index merge",
    "merge.theta-index.driver": "git-theta index-merge-driver %O %A %B %P",
    # ... and their clean filter: a pass-through that warns at `git add` when they disagree.
    "filter.theta-index.clean": "git-theta index-clean %f",
    # `git show` / `git log -p` use a textconv by default but an external driver only with
    # --ext-diff; `git diff` prefers the driver. The command names the text layout, which
    # makes it part of the textconv cache's key (git_theta/commands/textconv.py).
    "diff.theta.textconv": "git-theta textconv --layout 2",
    # Keep each text in refs/notes/textconv/theta by blob id: git then neither smudges nor
    # runs the textconv for a version it has seen.
    "diff.theta.cachetextconv": "true",
}


# git runs pager.<cmd> for `git show` / `git log` when their output is a terminal. Ours
# turns checkpoint textconv hunks into per-parameter tables, then runs the user's own pager
# (git_theta/commands/pager.py). Set only where the user has set nothing, and removed only
# while it still names us.
#
# The value is a shell command (git runs pagers through `sh -c`): where git-theta is not on
# PATH (a deactivated virtualenv, an uninstalled package) it falls back to the pager git would
# have run, so `git log` in any repository never ends in "git-theta: not found".
_PAGER = (
    "command -v git-theta >/dev/null 2>&1 && exec git-theta pager"
    ' || eval "exec $(git var GIT_PAGER)"'
)
PAGER_CONFIG: dict[str, str] = {"pager.show": _PAGER, "pager.log": _PAGER}
# Values earlier releases set: still ours to upgrade and to remove.
EARLIER_PAGER_VALUES: tuple[str, ...] = ("git-theta pager",)


# Commands Git starts often (the filter in every command that reads or writes a checkpoint,
# the drivers per file) name this installation's script by path; see `by_path`.
# Value: whether Git appends arguments to the command (as `"$@"`, at its end).
_BY_PATH = {
    "filter.theta.process": False,
    "merge.theta.driver": False,  # placeholders (%O...) instead, filled in wherever they are
    "diff.theta.command": True,  # the diff driver's seven
    "merge.theta-index.driver": False,
}


def by_path(command: str, launcher: Path | None = None, *, appended_args: bool = False) -> str:
    """`command` (`git-theta ARGS`) run as this installation's own `git-theta` script by
    absolute path, falling back to `git-theta` on PATH when that script is gone (a deleted
    virtualenv).

    Found through PATH, `git-theta` is often a version manager's shim (pyenv's is a bash
    script that runs `pyenv exec`): measured 0.30 s to start the filter that way against
    0.11 s for the script itself, on every checkout, status and add. Git runs these commands
    through `sh -c` (sub-process.c and run-command.c set use_shell), so the fallback costs
    one `test`; Git fills in `%O`-style placeholders wherever they appear."""
    script = launcher if launcher is not None else Path(sys.executable).parent / "git-theta"
    if not (script.is_file() and os.access(script, os.X_OK)):
        return command
    quoted = shlex.quote(str(script))
    rest = command.removeprefix("git-theta ")
    if appended_args:  # they land after the fallback: the first branch needs them too
        rest += ' "$@"'
    return f"test -x {quoted} && exec {quoted} {rest} || exec {command}"


def installed_config() -> dict[str, str]:
    """INSTALLED_CONFIG as `install` writes it from this installation."""
    return {
        k: by_path(v, appended_args=_BY_PATH[k]) if k in _BY_PATH else v
        for k, v in INSTALLED_CONFIG.items()
    }


def _ours(key: str, value: str) -> bool:
    """`value` is what some installation of git-theta wrote for `key` (another virtualenv
    writes another script path)."""
    plain = INSTALLED_CONFIG[key]
    if key in _BY_PATH and value.endswith(f"|| exec {plain}") and value.startswith("test -x "):
        return True
    return value in (plain, *EARLIER_VALUES.get(key, ()))


def _config(
    scope: Scope, *args: str, cwd: str | os.PathLike[str] | None, check: bool = True
) -> str:
    proc = run_git(["config", f"--{scope}", *args], cwd=cwd, check=check)
    return proc.stdout.decode("utf-8").strip() if proc.returncode == 0 else ""


def install(*, scope: Scope = "global", cwd: str | os.PathLike[str] | None = None) -> list[str]:
    """Write INSTALLED_CONFIG at `scope`; returns the keys whose value changed."""
    changed = []
    for key, value in installed_config().items():
        if _config(scope, "--get", key, cwd=cwd, check=False) != value:
            _config(scope, key, value, cwd=cwd)
            changed.append(key)
    return changed


def install_pager(
    *, scope: Scope = "global", cwd: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Write PAGER_CONFIG where unset; returns key -> the user's value for keys left alone."""
    kept = {}
    for key, value in PAGER_CONFIG.items():
        current = _config(scope, "--get", key, cwd=cwd, check=False)
        if not current or current in EARLIER_PAGER_VALUES:
            _config(scope, key, value, cwd=cwd)
        elif current != value:
            kept[key] = current
    return kept


def uninstall_pager(
    *, scope: Scope = "global", cwd: str | os.PathLike[str] | None = None
) -> list[str]:
    """Remove the PAGER_CONFIG keys that still name us; returns those removed."""
    removed = []
    for key, value in PAGER_CONFIG.items():
        if _config(scope, "--get", key, cwd=cwd, check=False) in (value, *EARLIER_PAGER_VALUES):
            _config(scope, "--unset", key, cwd=cwd)
            removed.append(key)
    if not _config(scope, "--get-regexp", "^pager\\.", cwd=cwd, check=False):
        _config(scope, "--remove-section", "pager", cwd=cwd, check=False)
    return removed


def installed(*, scope: Scope = "global", cwd: str | os.PathLike[str] | None = None) -> bool:
    return all(
        _ours(key, _config(scope, "--get", key, cwd=cwd, check=False)) for key in INSTALLED_CONFIG
    )


# Values earlier releases installed: still ours to remove.
EARLIER_VALUES: dict[str, tuple[str, ...]] = {
    "diff.theta.textconv": ("git-theta textconv",),
}


def uninstall(*, scope: Scope = "global", cwd: str | os.PathLike[str] | None = None) -> list[str]:
    """Remove the keys we set (only where they still hold a value we wrote); returns those
    removed."""
    removed = []
    for key in INSTALLED_CONFIG:
        if _ours(key, _config(scope, "--get", key, cwd=cwd, check=False)):
            _config(scope, "--unset", key, cwd=cwd)
            removed.append(key)
    removed += uninstall_pager(scope=scope, cwd=cwd)
    for section in (
        "filter.theta",
        "merge.theta",
        "diff.theta",
        "merge.theta-index",
        "filter.theta-index",
    ):
        if not _config(scope, "--get-regexp", f"^{section}\\.", cwd=cwd, check=False):
            _config(scope, "--remove-section", section, cwd=cwd, check=False)
    return removed
