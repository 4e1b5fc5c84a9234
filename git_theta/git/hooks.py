"""The hooks git-theta installs, described as data, and their installer.

Only pre-push for now: it uploads the checkpoint objects of the commits being pushed, so a
remote ref never points at commits whose objects the LFS server lacks. A hook that is already
there and not ours (Git LFS's, pre-commit's, a user's) is moved to `pre-push.legacy` and run
first with the same arguments and input; it is never overwritten. Our own hook, current or an
earlier version, is recognised by its marker line and replaced in place, so installing twice
changes nothing. Model: pre-commit `commands/install_uninstall.py`; git-lfs `lfs/hook.go`.
Hook contract: https://git-scm.com/docs/githooks#_pre_push

Git LFS: our hook also runs `git lfs pre-push` when the repository uses Git LFS and the
chained hook does not (git_theta/git/lfs.py), so `git push` uploads both kinds of objects in
either install order. `git lfs update --force` (or `install --force`) overwrites our hook with
its own; `restore()`, run by ordinary git-theta commands, puts ours back: Git LFS's hook is
recognised exactly, chained as `.legacy` when that is free, and otherwise replaced (the one
foreign hook ever replaced: ours does its work). Any other hook found in our place is the
user's decision: `restore()` then only says what to run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from git_theta.atomic import write_bytes
from git_theta.errors import ConfigError, GitThetaError
from git_theta.git import attributes, lfs
from git_theta.git.repo import Repo

__all__ = [
    "HOOKS",
    "Hook",
    "describe",
    "hooks_dir",
    "install",
    "restore",
    "restore_quietly",
    "uninstall",
]

# Every version of our hooks carries this line; it is how a hook is known to be ours.
MARKER = "# git-theta hook"
LEGACY_SUFFIX = ".legacy"

# "restored": Git LFS's hook had taken our place and a chained hook was already there (the
# same one, or another that our hook now complements by running `git lfs pre-push` itself).
Outcome = Literal["installed", "updated", "unchanged", "chained", "restored", "skipped"]


@dataclass(frozen=True)
class Hook:
    """A hook script: its file name in the hooks directory and its content."""

    name: str
    script: str


PRE_PUSH = Hook(
    "pre-push",
    f"""#!/bin/sh
{MARKER}: pre-push, version 2
# Uploads the checkpoint objects of the commits being pushed, and runs `git lfs pre-push`
# first when this repository uses Git LFS: `git lfs install` need not replace this hook.
# A hook that was here before is kept as pre-push{LEGACY_SUFFIX} and runs first, with the
# same arguments and input. Written by `git theta install --local` or `git theta track`.
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
    return MARKER in (lfs.read_hook(path) or "")


def install(repo: Repo, hook: Hook = PRE_PUSH, *, only_if_absent: bool = False) -> Outcome:
    """Install `hook`, chaining a foreign one found in its place.

    Args:
        only_if_absent: leave a user's hook alone (used when a fresh clone first talks to a
            remote: set the hook up quietly, but never move a user's hook unasked). Git
            LFS's own hook is still chained: its filter installs it in a fresh clone too.

    Raises:
        ConfigError: a foreign hook is in place and `<name>.legacy` already holds another.
    """
    directory = hooks_dir(repo)
    path = directory / hook.name
    legacy = directory / (hook.name + LEGACY_SUFFIX)
    outcome: Outcome = "installed"
    if path.exists() or path.is_symlink():
        text = lfs.read_hook(path) or ""
        if MARKER in text:
            if text == hook.script and os.access(path, os.X_OK):
                return "unchanged"
            outcome = "updated"
        elif only_if_absent and not _is_lfs_pre_push(hook, text):
            return "skipped"
        elif not (legacy.exists() or legacy.is_symlink()):
            os.replace(path, legacy)
            outcome = "chained"
        elif _is_lfs_pre_push(hook, text) or text == lfs.read_hook(legacy):
            # Nothing is lost: the same hook is chained already, or it is Git LFS's, whose
            # work our hook does itself when the repository uses Git LFS.
            outcome = "restored"
        else:
            raise ConfigError(
                f"{path} is not git-theta's and {legacy} already exists; merge them into "
                f"{legacy} by hand and delete {path}, then run this again"
            )
    directory.mkdir(parents=True, exist_ok=True)
    write_bytes(path, hook.script.encode("utf-8"), mode=0o755)
    return outcome


def _is_lfs_pre_push(hook: Hook, text: str) -> bool:
    return hook.name == PRE_PUSH.name and lfs.is_lfs_hook(text)


def describe(outcome: Outcome, hook: Hook = PRE_PUSH) -> str | None:
    """One line telling the user what `install` did to a hook that was there, if anything."""
    if outcome == "chained":
        return (
            f"The existing {hook.name} hook was kept as {hook.name}{LEGACY_SUFFIX} and runs first."
        )
    if outcome == "restored":
        return (
            f"Git LFS had replaced git-theta's {hook.name} hook; restored it "
            "(it runs Git LFS's pre-push too)."
        )
    return None


def restore(repo: Repo, hook: Hook = PRE_PUSH) -> str | None:
    """Put our hook back if Git LFS replaced it; a line for stderr when there is news.

    Cheap when nothing is wrong (one `git rev-parse`, one small read), so every git-theta
    command that is not a per-file entry point runs it. Acts only in a repository that
    tracks checkpoints and only on a hook it knows: Git LFS's is replaced (chained), any
    other foreign hook gets a message naming the command that chains it. A missing hook is
    left missing: deleting it is how a user opts out of uploads.
    """
    if repo.toplevel is None:
        return None
    path = hooks_dir(repo) / hook.name
    text = lfs.read_hook(path)
    if text is None or MARKER in text:
        return None
    if not attributes.tracked_patterns(repo.toplevel / ".gitattributes"):
        return None
    if _is_lfs_pre_push(hook, text):
        try:
            outcome = install(repo, hook)
        except (GitThetaError, OSError) as exc:
            return (
                f"git-theta: Git LFS replaced {path} and it could not be restored ({exc}); "
                "run `git theta install --local`"
            )
        where = (
            f"Git LFS's runs first, as {hook.name}{LEGACY_SUFFIX}"
            if outcome == "chained"
            else "it runs `git lfs pre-push` too"
        )
        return (
            f"git-theta: restored the {hook.name} hook that Git LFS had replaced; {where}. "
            "Pushes made meanwhile sent no checkpoint objects: `git theta push --all` sends "
            "what the remote lacks"
        )
    return (
        f"git-theta: {path} is not git-theta's, so `git push` uploads no checkpoint objects; "
        "run `git theta install --local` to chain it"
    )


def restore_quietly(err: TextIO) -> None:
    """`restore()` in the current repository, if any; its news goes to `err`. Never fails
    the command that called it: outside a repository, or unreadable, it does nothing."""
    try:
        message = restore(Repo())
    except (GitThetaError, OSError):
        return
    if message:
        err.write(message + "\n")


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
