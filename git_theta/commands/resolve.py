"""`git theta resolve PATH (--strategy S | --interactive)`: finish a conflicted checkpoint merge.

Reads the three versions git left in the index (stage 1 base, 2 ours, 3 theirs), merges them
with the strategy (or the strategies the user picks at the terminal), writes the merged
checkpoint to the work tree and stages it. Fisher files come from HEAD and the commit being
merged, cherry-picked, rebased or reverted (git_theta/git/merge_state.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from git_theta.context import RepoContext
from git_theta.errors import ConfigError, MergeError
from git_theta.git.merge_state import theirs_after_stop
from git_theta.git.repo import Repo
from git_theta.merges import split_options
from git_theta.merges.engine import FileMerge, MergeChoice, read_side, unresolved_message
from git_theta.merges.fisher_files import Origin
from git_theta.merges.opening import open_merge, write_checkpoint

__all__ = ["resolve"]

EXIT_ABORTED = 1


def resolve(
    path: str,
    *,
    strategy: str | None,
    options: Sequence[str] = (),
    params: Sequence[str] = (),
    interactive: bool = False,
    out: TextIO,
) -> int:
    """Merge the conflicted checkpoint at `path` (relative to the current directory).

    Args:
        strategy: a registered merge strategy (None with `interactive`).
        options: `key=value` strategy options.
        params: globs; the strategy resolves only matching parameters (all must be covered).
        interactive: ask at the terminal instead; an abort returns 1 and writes nothing.

    Raises:
        MergeError: `path` is not a conflicted tracked checkpoint, or conflicts remain.
        ConfigError: the strategy or an option is unknown; --interactive without a terminal.
    """
    choice = (
        MergeChoice.make(strategy, split_options(" ".join(options)), params) if strategy else None
    )
    with RepoContext(Repo()) as ctx:
        repo = ctx.repo
        rel = repo.root_pathspecs([path])[0]
        fm = _open_conflict(ctx, rel)
        if interactive:
            from git_theta.resolver import open_terminal, resolve_interactively

            terminal = open_terminal(require_stderr_tty=False)
            if terminal is None:
                raise ConfigError(
                    "--interactive needs a terminal (/dev/tty); use --strategy instead"
                )
            with terminal:
                result = resolve_interactively(fm, terminal)
            if result is None:
                return EXIT_ABORTED
        else:
            result = fm.merge([choice] if choice is not None else [])
        if result.unresolved:
            raise MergeError(unresolved_message(rel, result.unresolved, merging=False))
        write_checkpoint(ctx, result.metadata, rel, repo.worktree / rel)
        repo.git("add", "--", rel)
    how = "the chosen strategies" if interactive else strategy
    out.write(f"resolved {rel} with {how}; staged\n")
    return 0


def _open_conflict(ctx: RepoContext, rel: str) -> FileMerge:
    """The merge of the versions git left in the index for `rel` (stages 1, 2, 3).

    Raises:
        MergeError: `rel` has no conflicted versions, or they are not git-theta metadata.
    """
    stages = [ctx.repo.read_blob(f":{n}:{rel}") for n in (1, 2, 3)]
    if stages[1] is None or stages[2] is None:
        raise MergeError(
            f"{rel} has no conflicted versions in the index (ours and theirs); "
            "resolve runs after a `git merge` that stopped on this file"
        )
    base, ours, theirs = (
        read_side(data, f":{n}:{rel}") for n, data in zip((1, 2, 3), stages, strict=True)
    )
    assert ours is not None and theirs is not None
    theirs_rev = theirs_after_stop(ctx.repo)
    return open_merge(
        ctx,
        rel,
        base,
        [ours, theirs],
        [Origin(rel, "HEAD"), Origin(rel, theirs_rev) if theirs_rev else None],
        unknown=f"{rel}: fisher: no merge, cherry-pick, rebase or revert is in progress",
    )
