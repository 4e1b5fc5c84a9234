"""The public names of git_theta.diffing, pinned."""

import git_theta.diffing


def test_exported_members():
    assert git_theta.diffing.__all__ == [
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
    for name in git_theta.diffing.__all__:
        assert hasattr(git_theta.diffing, name)
