"""Which Git command started this filter process, read from /proc.

Git gives a filter no say in where its output goes: a smudge may be written to the work tree
(checkout), to a temp file (`git diff` with an external driver, `git archive`), or to some
other tree (`git checkout-index --prefix`). The direct checkout (git_theta/direct.py) answers
a smudge with the metadata and writes the real file itself, which is only right when Git
writes the answer to the work tree at the request's path. So it is taken only for commands
known to do exactly that, found by walking up the process tree from the filter: past the
shell git may start us through (`sh -c` when the command line has a space), to the nearest
`git` process, whose subcommand decides. The nearest one, not the outermost: it is the one
that talks to us and writes the files (`git stash` runs `git reset --hard` as a child; a
`git checkout` run by a user's pre-commit hook is still a checkout).

Anything we cannot read (no /proc, an alias, an unknown command) takes the smudge path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["Invoker", "find_invoker", "git_subcommand", "writes_work_tree"]

# Git's global options that take the next word as their value (git.c handle_options).
_VALUED = {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--config-env"}
# How far up to look: the filter's parent is git or a shell git started.
_MAX_HOPS = 4
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "busybox"}

# Commands that write every smudge's answer to the work tree at the request's path (verified
# with git 2.39, tests/end_to_end/test_direct_checkout.py).
_WRITERS = {
    "checkout",
    "switch",
    "restore",
    "reset",
    "merge",
    "rebase",
    "cherry-pick",
    "revert",
    "am",
    "clone",
    "sparse-checkout",
    "stash",
}
# `git stash show -p` smudges for a diff driver; only these stash commands write the tree.
_STASH_WRITERS = {"push", "save", "pop", "apply", "branch"}
# Patch mode hands content to `git apply` and diffs; it is interactive and never large.
_PATCH_FLAGS = {"-p", "--patch"}


class Invoker(NamedTuple):
    """The nearest git process above the filter: its pid and its arguments after `git`."""

    pid: int
    argv: tuple[str, ...]

    @property
    def command(self) -> str | None:
        return git_subcommand(self.argv)[0]


def git_subcommand(args: tuple[str, ...] | list[str]) -> tuple[str | None, tuple[str, ...]]:
    """The subcommand of `git ARGS` and its own arguments, skipping git's global options."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _VALUED:
            i += 2
            continue
        if arg.startswith("-"):  # --git-dir=X, --no-pager, -P, --bare, ...
            i += 1
            continue
        return arg, tuple(args[i + 1 :])
    return None, ()


def writes_work_tree(command: str | None, args: tuple[str, ...]) -> bool:
    """True when `git COMMAND ARGS` writes each smudge's answer to the work tree."""
    if command not in _WRITERS or any(a in _PATCH_FLAGS for a in args):
        return False
    if command == "stash":
        sub = next((a for a in args if not a.startswith("-")), "push")
        return sub in _STASH_WRITERS
    return True


def _read_proc(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, argv) of `pid`, or None when /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # The name field is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rfind(b")") + 2 :].split()
    words = [w.decode("utf-8", "surrogateescape") for w in argv if w]
    return int(fields[1]), words


def find_invoker(pid: int | None = None) -> Invoker | None:
    """The nearest `git` process above `pid` (default: this process), or None."""
    current = os.getpid() if pid is None else pid
    for _ in range(_MAX_HOPS):
        seen = _read_proc(current)
        if seen is None:
            return None
        current = seen[0]
        if current <= 1:
            return None
        parent = _read_proc(current)
        if parent is None or not parent[1]:
            return None
        name = os.path.basename(parent[1][0])
        if name == "git":
            return Invoker(current, tuple(parent[1][1:]))
        if name.startswith("git-") and name != "git-theta":  # dashed form: git-checkout
            return Invoker(current, (name[4:], *parent[1][1:]))
        if name not in _SHELLS and not name.startswith("python"):
            return None
    return None
