"""Evaluate check rules on compared checkpoints: the CI gate behind `git theta check`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from git_theta.diffing.compare import CompareOptions
from git_theta.diffing.records import FileDiff, ParamDiff
from git_theta.diffing.rules import Rules

__all__ = ["Violation", "compare_options", "evaluate"]


@dataclass(frozen=True)
class Violation:
    """One parameter that breaks one rule.

    Attributes:
        path: the checkpoint.
        param: the parameter.
        rule: `frozen`, `max-relative-change`, `no-nan` or `shape-change`.
        value: what was found, against what the rule allows.
    """

    path: str
    param: str
    rule: str
    value: str

    def __str__(self) -> str:
        return f"{self.path}: {self.param}: {self.rule}: {self.value}"


def compare_options(rules: Rules) -> CompareOptions:
    """Read tensors only for the rules that need their values: statistics for a change
    limit, the new tensors for NaN/Inf. Frozen and shape rules go by metadata alone."""
    return CompareOptions(stats=rules.max_relative_change is not None, nonfinite=rules.no_nan)


def _shape(p: ParamDiff) -> str:
    assert p.old is not None and p.new is not None
    return f"{list(p.old.shape)} -> {list(p.new.shape)}"


def _param_violations(rules: Rules, path: str, p: ParamDiff) -> list[Violation]:
    found = []
    pattern = next((pat for pat in rules.frozen if fnmatchcase(p.name, pat)), None)
    if pattern is not None and p.status not in ("unchanged", "moved"):
        found.append(Violation(path, p.name, "frozen", f"{p.status} (frozen by {pattern!r})"))
    if p.status != "modified" and p.status != "added":
        return found
    if p.shape_changed and not rules.allow_shape_change:
        found.append(Violation(path, p.name, "shape-change", _shape(p)))
    limit = rules.max_relative_change
    rel = p.relative_change
    if limit is not None and rel is not None and not rel <= limit:
        shown = "nan (the change is undefined)" if math.isnan(rel) else f"{rel:.4g}"
        found.append(Violation(path, p.name, "max-relative-change", f"{shown} > {limit:g}"))
    if rules.no_nan and p.nonfinite:
        found.append(Violation(path, p.name, "no-nan", str(p.nonfinite)))
    return found


def evaluate(rules: Rules, files: Sequence[FileDiff]) -> list[Violation]:
    """Every violation, file by file, in each file's parameter order."""
    return [v for f in files for p in f.params for v in _param_violations(rules, f.path, p)]
