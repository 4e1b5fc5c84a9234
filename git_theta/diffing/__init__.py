"""Per-parameter diffs of checkpoints and the rules `git theta check` enforces on them.

compare.py    two versions of one checkpoint -> FileDiff (reads only changed tensors)
numeric.py    dtype widening (bf16, fp8 tables) and chunked delta statistics
sides.py      a version: stored (metadata + objects) or a checkpoint file
revisions.py  endpoints (revision, index, work tree) and the checkpoints that differ
render.py     DiffReport -> text, JSON or Markdown (docs/diff.md)
listing.py    one version as lines whose line diff reads per parameter (textconv)
rules.py      check rules from the command line and `.git-theta.toml` / pyproject.toml
check.py      rules x FileDiffs -> violations
"""

from git_theta.diffing.check import Violation, evaluate
from git_theta.diffing.compare import CompareOptions, compare, raise_for_missing
from git_theta.diffing.listing import listing
from git_theta.diffing.numeric import DeltaStats, Nonfinite, TensorStats, delta_stats, tensor_stats
from git_theta.diffing.records import DiffReport, FileDiff, ParamDiff, ParamInfo
from git_theta.diffing.render import render
from git_theta.diffing.revisions import Endpoint, diff_endpoints, parse_range, parse_revisions
from git_theta.diffing.rules import Rules, load_rules
from git_theta.diffing.sides import FileSide, Side, StoredSide

__all__ = [
    "CompareOptions",
    "DeltaStats",
    "DiffReport",
    "Endpoint",
    "FileDiff",
    "FileSide",
    "Nonfinite",
    "ParamDiff",
    "ParamInfo",
    "Rules",
    "Side",
    "StoredSide",
    "TensorStats",
    "Violation",
    "compare",
    "delta_stats",
    "diff_endpoints",
    "evaluate",
    "listing",
    "load_rules",
    "parse_range",
    "parse_revisions",
    "raise_for_missing",
    "render",
    "tensor_stats",
]
