"""`git theta track` / `untrack`: route file patterns through git-theta in `.gitattributes`.

`track` never silently takes a path from another driver: a pattern that names (or matches
files that have) `filter=lfs` or another filter, merge or diff driver is refused unless
`--force`. Whether a path is covered is asked of `git check-attr`, which knows every
attributes file and git's precedence between them.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from pathlib import Path, PurePosixPath
from typing import NamedTuple, TextIO

from git_theta.commands import tracking
from git_theta.errors import ConfigError
from git_theta.git import attributes, checkattr, hooks
from git_theta.git.repo import Repo, run_git
from git_theta.sharded import attributes as shard_attributes

__all__ = ["track", "untrack"]


def _root_relative(repo: Repo, pattern: str) -> str:
    """A pattern given in a subdirectory, made relative to the root as git-lfs does."""
    prefix = os.path.relpath(Path.cwd().resolve(), repo.worktree.resolve())
    if prefix == "." or pattern.startswith("/"):
        return pattern
    return str(PurePosixPath(*Path(prefix).parts) / pattern)


class _Check(NamedTuple):
    """What tracking one new pattern would do to the paths it names."""

    driver: str | None  # "filter=lfs": another driver has a path the pattern names
    path: str | None  # the file that has it; None when it is the pattern's own path
    covered: bool  # a git-theta pattern already routes the pattern's own path through us

    def conflict(self, pattern: str) -> str:
        which = f"matches {self.path}, which has" if self.path else "is already tracked with"
        return f'"{pattern}" {which} {self.driver}'


def _candidates(root: Path, pattern: str) -> list[str]:
    """The pattern read as a path (what a literal path pattern names; a glob names itself,
    which other patterns match as they would match its files), then the files it matches."""
    literal = pattern.lstrip("/")
    # gitattributes patterns without a slash match at any depth; with one, from the root.
    spec = f":(glob){literal}" if "/" in pattern.rstrip("/") else f":(glob)**/{literal}"
    listed = run_git(
        ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", spec],
        cwd=root,
        check=False,
    ).stdout.decode("utf-8", "surrogateescape")
    paths = [literal, *(p for p in listed.split("\0") if p)]
    return [p for p in dict.fromkeys(paths) if p and ".." not in PurePosixPath(p).parts]


def _check(root: Path, pattern: str) -> _Check:
    paths = _candidates(root, pattern)
    found = checkattr.attributes_of(root, paths, attributes.DRIVER_ATTRIBUTES)
    for path in paths:
        driver = attributes.foreign_driver(found.get(path, {}))
        if driver:
            return _Check(driver, None if path == paths[0] else path, False)
    own = found.get(paths[0], {}) if paths else {}
    return _Check(None, None, own.get("filter") == attributes.THETA)


def _covering(existing: list[str], pattern: str) -> str:
    """The git-theta pattern that covers `pattern`, for the message (best effort)."""
    path = PurePosixPath(pattern.lstrip("/"))
    for theirs in reversed(existing):
        if "/" not in theirs.rstrip("/") and path.match(theirs):
            return f' (by "{theirs}")'
        if fnmatch.fnmatchcase(str(path), theirs.lstrip("/")):
            return f' (by "{theirs}")'
    return ""


def track(patterns: list[str], out: TextIO, *, force: bool = False) -> int:
    """Add a git-theta line to the root `.gitattributes` for each pattern and install hooks.

    A pattern whose paths another driver handles (`filter=lfs`, `merge=union`, ...) is
    refused unless `force`, naming the pattern and the attribute; with `force`, lines for
    exactly that pattern naming the other driver are replaced. A pattern that an existing
    git-theta pattern already covers adds nothing.

    Raises:
        ConfigError: a pattern would take paths from another driver and `force` is False.
    """
    repo = Repo()
    if not patterns:
        return tracking.list_tracked(repo, out)
    tracking.require_installed(repo)
    routed = tracking.committed_theta_paths(repo)
    root = repo.worktree
    file = root / ".gitattributes"
    wanted = list(dict.fromkeys(_root_relative(repo, p) for p in patterns))
    # Shard indexes are JSON text: they get the index merge driver, not the filter.
    indexes = [p for p in wanted if shard_attributes.is_index_pattern(p)]
    wanted = [p for p in wanted if p not in indexes]
    for pattern in shard_attributes.add_index_patterns(root / ".gitattributes", indexes):
        out.write(f'Merging shard indexes "{pattern}" with git-theta\n')
    present = attributes.tracked_patterns(file)
    checks = {p: _check(root, p) for p in wanted if p not in present}
    for pattern, check in checks.items():
        if check.driver and not force:
            raise ConfigError(
                f"{check.conflict(pattern)}; run "
                f"`git theta track --force {shlex.quote(pattern)}` to move it to git-theta"
            )
    to_add = [p for p, c in checks.items() if c.driver or not c.covered]
    for pattern in to_add:
        if checks[pattern].driver:
            for line in attributes.remove_foreign(file, pattern):
                out.write(f"Replaced {line!r} in .gitattributes\n")
    added = attributes.add_patterns(file, to_add)
    _say_what_was_done(wanted, added, [p for p in checks if p not in to_add], present, out)
    if file.exists():
        repo.git("add", "--", ".gitattributes")
    for pattern in added:
        if checks[pattern].driver:
            _warn_if_still_foreign(root, pattern, out)
    message = hooks.describe(hooks.install(repo))
    if message:
        out.write(message + "\n")
    if added and tracking.committed_theta_paths(repo) - routed:
        out.write(
            "Files already committed stay as they are until re-added: "
            "`git add --renormalize .` converts them.\n"
        )
    return 0


def _say_what_was_done(
    wanted: list[str], added: list[str], covered: list[str], present: list[str], out: TextIO
) -> None:
    for pattern in wanted:
        if pattern in added:
            out.write(f'Tracking "{pattern}"\n')
        elif pattern in covered:
            out.write(
                f'"{pattern}" is covered by git-theta already{_covering(present, pattern)}; '
                "nothing added\n"
            )
        else:
            out.write(f'Already tracking "{pattern}"\n')


def _warn_if_still_foreign(root: Path, pattern: str, out: TextIO) -> None:
    """After `--force`: a more specific attributes file may still win for the pattern."""
    check = _check(root, pattern)
    if check.driver:
        out.write(
            f"warning: {check.conflict(pattern)} still, set by a more specific attributes "
            "file (a subdirectory's .gitattributes or .git/info/attributes); change it there\n"
        )


def untrack(patterns: list[str], out: TextIO) -> int:
    repo = Repo()
    file = repo.worktree / ".gitattributes"
    wanted = [_root_relative(repo, p) for p in patterns]
    removed = attributes.remove_patterns(file, wanted)
    for pattern in wanted:
        verb = "Untracking" if pattern in removed else "Was not tracking"
        out.write(f'{verb} "{pattern}"\n')
    if file.exists():
        repo.git("add", "--", ".gitattributes")
    return 0
