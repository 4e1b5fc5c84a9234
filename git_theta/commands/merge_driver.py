"""The merge driver git calls as `git-theta merge-driver %O %A %B %P`.

Contract (https://git-scm.com/docs/gitattributes#_defining_a_custom_merge_driver): %O, %A and
%B are temp files holding the base, ours and theirs versions of %P as stored (our metadata);
the result goes into %A; exit 0 for a clean merge, non-zero for a conflict. On a conflict %A
is left as ours, so the work tree shows our checkpoint and the index keeps stages 1/2/3 for
`git theta resolve`.

Parameters changed on one side only merge without reading a tensor; parameters changed on both
sides go to the strategy configured (git_theta/merges/engine.py `configured_choice`); with none, to the
interactive resolver when a terminal is attached (git_theta/resolver/); else they stay a
conflict with a message naming them and the way out.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from git_theta import metadata as md
from git_theta.atomic import write_bytes
from git_theta.context import RepoContext
from git_theta.git.merge_state import theirs_in_driver
from git_theta.git.repo import Repo
from git_theta.merges.engine import configured_choice, read_side, unresolved_message
from git_theta.merges.fisher_files import Origin
from git_theta.merges.opening import open_merge

__all__ = ["merge_driver"]

EXIT_CLEAN = 0
EXIT_CONFLICT = 1
_UNKNOWN_THEIRS = (
    "{path}: fisher: git does not tell a merge driver which commit theirs is during a "
    "cherry-pick or revert; name the files with fisher=OURS,THEIRS in theta.merge.options, or "
    "let the merge stop and run `git theta resolve {path} --strategy fisher`"
)


def merge_driver(base: str, ours: str, theirs: str, path: str, *, err: TextIO | None = None) -> int:
    """Merge the metadata in files `base`, `ours`, `theirs` for `path`; the result into `ours`.

    Raises:
        MergeError, ConfigError, StoreError: the merge cannot be done; `ours` is untouched
            (the caller exits non-zero, which git takes as a conflict).
    """
    err = err or sys.stderr
    sides = [
        read_side(Path(f).read_bytes(), f"{label}:{path}")
        for f, label in ((base, "base"), (ours, "ours"), (theirs, "theirs"))
    ]
    o, a, b = sides
    if a is None or b is None:
        err.write(f"git-theta: {path}: one side is empty; resolve it by hand\n")
        return EXIT_CONFLICT
    with RepoContext(Repo()) as ctx:
        repo = ctx.repo
        choice = configured_choice(repo, path)
        theirs_rev = theirs_in_driver(repo)
        fm = open_merge(
            ctx,
            path,
            o,
            [a, b],
            [Origin(path, "HEAD"), Origin(path, theirs_rev) if theirs_rev else None],
            unknown=_UNKNOWN_THEIRS.format(path=path),
        )
        terminal = None
        if choice is None and fm.conflicts:
            from git_theta.resolver import open_terminal

            terminal = open_terminal(require_stderr_tty=True)
        if terminal is not None:
            from git_theta.resolver import resolve_interactively

            with terminal:
                interactive = resolve_interactively(fm, terminal)
            if interactive is None:
                err.write(unresolved_message(path, fm.conflicts, merging=True) + "\n")
                return EXIT_CONFLICT
            result = interactive
        else:
            result = fm.merge([choice] if choice is not None else [])
    if result.unresolved:
        err.write(unresolved_message(path, result.unresolved, merging=True) + "\n")
        return EXIT_CONFLICT
    write_bytes(Path(ours), md.encode(result.metadata))
    return EXIT_CLEAN
