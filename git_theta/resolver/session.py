"""The resolver's dialogue: a numbered table of conflicts, then commands until every conflict
has a strategy and the user confirms.

Commands (one per line):

    SELECTION STRATEGY [key=value ...]   choose STRATEGY for the selected parameters
    list                                 the table again, with the choices so far
    context                              ours, theirs, and their commits that changed the file
    strategies                           the strategies and what they do
    done                                 merge (once every conflict has a strategy)
    help                                 this text
    q                                    abort (also Ctrl-D): the merge stays conflicted

SELECTION is `all` (every parameter without a strategy yet), row numbers (`1`, `2,4`, `3-5`),
or a glob over parameter names (`layers.*.weight`, an exact name). Without options on the
line, the strategy's options are shown with their defaults to edit. A strategy that cannot
resolve a parameter (a numeric merge of integers, a deletion, no base) skips it, saying why.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

from git_theta.errors import ConfigError, GitThetaError
from git_theta.merges import MergeStrategy, all_strategies, get_strategy, parse_options
from git_theta.merges.base import split_options
from git_theta.merges.engine import FileMerge, MergeChoice, MergeResult, cannot_resolve
from git_theta.resolver.stats import ConflictStats, conflict_stats, format_table
from git_theta.resolver.terminal import Terminal

__all__ = ["resolve_interactively"]

PROMPT = "theta-merge> "
_ROWS = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_HELP = (
    "Choose with: SELECTION STRATEGY [key=value ...]   SELECTION: all | 1,3-4 | GLOB\n"
    "  list | context | strategies | done | help | q (abort: the merge stays conflicted)\n"
)


class _Abort(Exception):
    """The user quit or closed the input."""


def resolve_interactively(fm: FileMerge, term: Terminal) -> MergeResult | None:
    """Ask the user how to resolve `fm`'s conflicts and merge with the answers.

    Returns:
        The merge result (nothing unresolved), or None when the user aborted; then nothing
        was written except objects in the store.

    Raises:
        MissingObjectError, CorruptObjectError: a conflicting tensor cannot be read.
    """
    fm.prefetch(fm.conflicts)
    stats = [conflict_stats(fm, c) for c in fm.conflicts]
    dialogue = _Dialogue(fm, stats, term)
    try:
        return dialogue.run()
    except _Abort:
        term.write(f"git-theta: {fm.path}: aborted; the merge stays conflicted\n")
        return None


class _Dialogue:
    def __init__(self, fm: FileMerge, stats: Sequence[ConflictStats], term: Terminal) -> None:
        self.fm = fm
        self.stats = stats
        self.term = term
        self.names = [s.conflict.name for s in stats]
        self.chosen: dict[str, MergeChoice] = {}
        # A command typed at a question's prompt (options, yes/no): run next, never swallowed.
        self.pending: str | None = None

    def _read(self, prompt: str) -> str:
        if self.pending is not None and prompt == PROMPT:
            line: str | None = self.pending
            self.pending = None
        else:
            line = self.term.read_line(prompt)
        if line is None or line.lower() in ("q", "quit", "abort"):
            raise _Abort
        return line

    def _labels(self) -> dict[str, str]:
        return {n: _describe(c) for n, c in self.chosen.items()}

    def run(self) -> MergeResult:
        n = len(self.names)
        self.term.write(
            f"git-theta: {self.fm.path}: {n} parameter{'s' * (n != 1)} changed differently on "
            "both sides; choose how to merge them\n"
        )
        self.term.write(format_table(self.stats, {}) + _HELP)
        while True:
            line = self._read(PROMPT)
            word = line.split()[0].lower() if line.split() else ""
            if not word:
                continue
            if word in ("help", "h", "?"):
                self.term.write(_HELP)
            elif word in ("list", "l", "ls"):
                self.term.write(format_table(self.stats, self._labels()))
            elif word in ("strategies", "s"):
                self.term.write(_strategy_list())
            elif word in ("context", "c"):
                from git_theta.resolver.context import merge_context

                self.term.write(merge_context(self.fm.path))
            elif word == "done":
                result = self._finish()
                if result is not None:
                    return result
            else:
                self._choose(line)
                if len(self.chosen) == len(self.names):
                    result = self._finish()
                    if result is not None:
                        return result

    def _select(self, selector: str) -> list[str]:
        if selector == "all":
            return [n for n in self.names if n not in self.chosen]
        if _ROWS.match(selector):
            rows: list[int] = []
            for part in selector.split(","):
                low, _, high = part.partition("-")
                rows.extend(range(int(low), int(high or low) + 1))
            bad = [r for r in rows if not 1 <= r <= len(self.names)]
            if bad:
                raise ConfigError(f"there is no row {bad[0]} (rows 1-{len(self.names)})")
            return [self.names[r - 1] for r in rows]
        return [n for n in self.names if fnmatch.fnmatchcase(n, selector)]

    def _choose(self, line: str) -> None:
        parts = line.split()
        if len(parts) < 2:
            self.term.write(f"say which strategy: {parts[0]} STRATEGY (`strategies` lists them)\n")
            return
        try:
            names = self._select(parts[0])
            strategy = get_strategy(parts[1])
            inline = split_options(" ".join(parts[2:]))
            options = parse_options(strategy, inline)
        except ConfigError as exc:
            self.term.write(f"{exc}\n")
            return
        if not names:
            self.term.write(f"no conflicting parameter matches {parts[0]!r}\n")
            return
        if not inline and strategy.pick is None:  # a pick has nothing to tune
            options = self._edit_options(strategy, options)
        taken = []
        for name in names:
            conflict = self.stats[self.names.index(name)].conflict
            reason = cannot_resolve(strategy, conflict)
            if reason:
                self.term.write(f"  skipped {name}: {reason}\n")
                continue
            self.chosen[name] = MergeChoice.for_names(strategy, options, [name])
            taken.append(name)
        if taken:
            left = len(self.names) - len(self.chosen)
            self.term.write(
                f"  {_describe(self.chosen[taken[0]])}: {', '.join(taken)} ({left} left)\n"
            )

    def _edit_options(self, strategy: MergeStrategy, options: dict[str, Any]) -> dict[str, Any]:
        shown = " ".join(f"{d.name}={options[d.name]}" for d in strategy.all_options())
        self.term.write(f"  {strategy.name} options: {shown}\n")
        for d in strategy.all_options():
            self.term.write(f"    {d.name}: {d.help}\n")
        while True:
            line = self._read("  change (key=value ..., Enter keeps these): ")
            if not line:
                return options
            if "=" not in line.split()[0]:
                # Not an option but the next command (`list`, `2 take-ours`): keep the
                # defaults and run it.
                self.pending = line
                return options
            try:
                changed = {k: str(v) for k, v in options.items()}
                changed.update(split_options(line))
                return parse_options(strategy, changed)
            except ConfigError as exc:
                self.term.write(f"  {exc}\n")

    def _finish(self) -> MergeResult | None:
        missing = [n for n in self.names if n not in self.chosen]
        if missing:
            self.term.write(
                f"{len(missing)} parameter(s) have no strategy yet: {', '.join(missing[:5])}\n"
            )
            return None
        self.term.write(format_table(self.stats, self._labels()))
        answer = self._read("merge with these choices? [Y]es, [n]o to change them, [q]uit: ")
        if answer.lower() not in ("", "y", "yes"):
            if answer.lower() not in ("n", "no"):
                self.pending = answer  # a command (`list`, `1 average`): run it, ask again later
            return None
        try:
            result = self.fm.merge(list(self.chosen.values()))
        except GitThetaError as exc:  # e.g. a Fisher file is missing: let the user choose again
            self.term.write(f"git-theta: {exc}\nchoose another strategy for it, or q\n")
            return None
        if result.unresolved:
            for c in result.unresolved:
                self.chosen.pop(c.name, None)
                self.term.write(f"  still conflicting: {c.describe()}\n")
            return None
        self.term.write(f"git-theta: {self.fm.path}: merged\n")
        return result


def _describe(choice: MergeChoice) -> str:
    shown = [
        f"{d.name}={choice.options[d.name]}"
        for d in choice.strategy.all_options()
        if choice.options[d.name] != d.default
    ]
    return " ".join([choice.strategy.name, *shown])


def _strategy_list() -> str:
    table = all_strategies()
    width = max(len(n) for n in table)
    return "".join(f"  {n.ljust(width)}  {s.summary}\n" for n, s in table.items())
