"""`git theta check [REV-RANGE]`: fail (exit 1) when a checkpoint change breaks a rule."""

from __future__ import annotations

from typing import TextIO

from git_theta.diffing.check import compare_options, evaluate
from git_theta.diffing.compare import raise_for_missing
from git_theta.diffing.revisions import WORKTREE, diff_endpoints, parse_range
from git_theta.diffing.rules import Rules, load_rules
from git_theta.git.repo import Repo
from git_theta.sharded.consistency import check_index

__all__ = ["check"]

EXIT_OK = 0
EXIT_VIOLATIONS = 1


def check(
    range_: str | None,
    *,
    frozen: tuple[str, ...] = (),
    max_relative_change: float | None = None,
    no_nan: bool = False,
    allow_shape_change: bool = False,
    out: TextIO,
) -> int:
    """Check every tracked checkpoint that changed in `range_` (see parse_range) against the
    rules of the checked-in file plus these options; print each violation.

    Returns:
        0 when every rule holds, 1 when any is broken.

    Raises:
        ConfigError: the rules file is malformed (message starts with FILE:LINE:).
        RevisionError: a revision does not exist.
        MissingObjectError: tensors the rules must read are not in the local store.
    """
    repo = Repo()
    try:
        # A bare repository has no work tree to hold a rules file: options only.
        found = load_rules(repo.toplevel) if repo.toplevel is not None else Rules()
        rules = found.merged(
            frozen=frozen,
            max_relative_change=max_relative_change,
            no_nan=no_nan or None,
            allow_shape_change=allow_shape_change or None,
        )
        old, new = parse_range(repo, range_)
        report = diff_endpoints(repo, old, new, options=compare_options(rules)).report
        raise_for_missing(report.files)
        # Shard indexes must agree with their shards at the checked version.
        shard_problems = check_index(repo, new.rev, worktree=new == WORKTREE)
    finally:
        repo.close()
    violations = evaluate(rules, report.files)
    for violation in violations:
        out.write(f"{violation}\n")
    for problem in shard_problems:
        out.write(f"{problem}\n")
    changed = sum(
        f.counts.get(s, 0) for f in report.files for s in ("added", "removed", "modified")
    )
    scope = (
        f"{changed} changed parameter(s) in {len(report.files)} checkpoint(s), "
        f"{report.old} -> {report.new}"
    )
    if violations or shard_problems:
        count = len(violations) + len(shard_problems)
        out.write(f"git-theta check: {count} violation(s); {scope}\n")
        return EXIT_VIOLATIONS
    out.write(f"git-theta check: all rules hold; {scope}\n")
    return EXIT_OK
