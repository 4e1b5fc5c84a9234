"""The resolver's `context` command: which commits "ours" and "theirs" are, and the commits on
each side since the merge base that changed the conflicted file (as git-theta 0.2's `context`
action showed them)."""

from __future__ import annotations

import os

from git_theta.git.repo import run_git

__all__ = ["merge_context"]

# What "theirs" is while a command is stopped on a conflict, in the order git would have it.
_OTHER_HEADS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "REBASE_HEAD")
# Commits listed per side; the count of any others is given.
_SHOWN = 5


def _git(*args: str) -> str | None:
    proc = run_git(list(args), cwd=None, check=False)
    return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else None


def _other_head() -> str | None:
    for ref in _OTHER_HEADS:
        found = _git("rev-parse", "--verify", "-q", ref)
        if found:
            return found.split()[0]
    # While `git merge` runs the merge driver it has not written MERGE_HEAD yet; git names
    # both sides in GITHEAD_<commit> variables for the driver's labels.
    ours = _git("rev-parse", "--verify", "-q", "HEAD")
    for key in os.environ:
        if key.startswith("GITHEAD_") and key[len("GITHEAD_") :] != ours:
            return key[len("GITHEAD_") :]
    return None


def _side(label: str, commit: str, base: str | None, path: str) -> list[str]:
    name = _git("name-rev", "--name-only", "--no-undefined", commit) or "detached"
    subject = _git("log", "-1", "--format=%h %s", commit) or commit[:12]
    lines = [f"  {label}: {subject} ({name})"]
    if base:
        changed = _git("log", "--format=%h %s", f"{base}..{commit}", "--", f":(top){path}") or ""
        commits = [c for c in changed.splitlines() if c]
        for c in commits[:_SHOWN]:
            lines.append(f"      {c}")
        if len(commits) > _SHOWN:
            lines.append(f"      ... {len(commits) - _SHOWN} more")
        if not commits:
            lines.append(f"      (no commit since the merge base changed {path})")
    return lines


def merge_context(path: str) -> str:
    """Text for the `context` command: ours and theirs, each with the commits since the merge
    base that changed `path`."""
    ours = _git("rev-parse", "--verify", "-q", "HEAD")
    theirs = _other_head()
    if ours is None or theirs is None:
        return "  no merge in progress: ours and theirs cannot be named\n"
    base = _git("merge-base", ours, theirs)
    base_line = _git("log", "-1", "--format=%h %s", base) if base else None
    lines = [
        *_side("ours  ", ours, base, path),
        *_side("theirs", theirs, base, path),
        f"  base  : {base_line or '(no common ancestor)'}",
    ]
    return "\n".join(lines) + "\n"
