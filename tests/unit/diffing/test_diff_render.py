"""Text, Markdown and JSON renderings of a fixed report (golden)."""

from __future__ import annotations

import json
import math

from git_theta.diffing.numeric import DeltaStats, Nonfinite
from git_theta.diffing.records import DiffReport, FileDiff, ParamDiff, ParamInfo
from git_theta.diffing.render import render

H = "xxh3_128:" + "0" * 32


def info(dtype="F32", shape=(4, 4), stored=100, update="dense"):
    return ParamInfo(dtype, shape, H, update, stored)


REPORT = DiffReport(
    "HEAD~1",
    "HEAD",
    (
        FileDiff(
            path="model.safetensors",
            params=(
                ParamDiff(
                    "layers.0.weight",
                    "modified",
                    info(),
                    info(stored=2048),
                    stats=DeltaStats(16, 4, 0.25, 0.5, 2.0, 2.1, 4.0),
                ),
                ParamDiff(
                    "bad|name",
                    "modified",
                    info(),
                    info(),
                    stats=DeltaStats(
                        16, 16, math.nan, math.nan, 1.0, math.nan, math.nan, Nonfinite(2, 0)
                    ),
                    nonfinite=Nonfinite(2, 0),
                ),
                ParamDiff(
                    "step", "modified", info("I64", ()), info("I64", ()), stats=DeltaStats(1, 1, 3)
                ),
                ParamDiff("head", "modified", info(), info("F16", (2, 8)), note="shape changed"),
                ParamDiff("extra", "added", None, info(shape=(3,), stored=40)),
                ParamDiff("mask", "removed", info("BOOL", (4,), 30), None),
            ),
            counts={"added": 1, "removed": 1, "modified": 4, "unchanged": 2},
            old_params=7,
            new_params=7,
            old_format="safetensors",
            new_format="safetensors",
        ),
    ),
)

TEXT = """\
diff --git-theta a/model.safetensors b/model.safetensors
model.safetensors: 4 modified, 1 added, 1 removed, 2 unchanged (7 -> 7 params; 2.3 KiB new objects)
  status    parameter        dtype     shape     update  stored   ||delta||  rel.change  max|delta|  cosine    changed  note
  modified  layers.0.weight  F32       4x4       dense   2.0 KiB  0.5        0.25        0.25        0.952381  25%
  modified  bad|name         F32       4x4       dense   100 B    nan        nan         nan         nan       100%     2 NaN
  modified  step             I64       scalar    dense   100 B    -          -           3           -         100%
  modified  head             F32->F16  4x4->2x8  dense   100 B    -          -           -           -         -        shape changed
  added     extra            F32       3         dense   40 B
  removed   mask             BOOL      4         dense   30 B
"""


def test_text_golden():
    assert render(REPORT, "text") == TEXT


def test_top_limits_rows_per_file():
    out = render(REPORT, "text", top=2).splitlines()
    assert out[-1] == "  ... 4 more parameter(s) not shown (--top 2)"
    assert len(out) == 6


def test_markdown_golden():
    assert render(REPORT, "markdown", top=3) == (
        "## Checkpoint changes: `HEAD~1` → `HEAD`\n"
        "\n"
        "### `model.safetensors`\n"
        "\n"
        "4 modified, 1 added, 1 removed, 2 unchanged (7 -> 7 params; 2.3 KiB new objects)\n"
        "\n"
        "| status | parameter | dtype | shape | update | stored | ‖Δ‖₂ | ‖Δ‖/‖old‖ | max \\|Δ\\| | cosine | changed | note |\n"
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|\n"
        "| modified | `layers.0.weight` | F32 | 4x4 | dense | 2.0 KiB | 0.5 | 0.25 | 0.25 | 0.952381 | 25% |  |\n"
        "| modified | `bad\\|name` | F32 | 4x4 | dense | 100 B | nan | nan | nan | nan | 100% | 2 NaN |\n"
        "| modified | `step` | I64 | scalar | dense | 100 B | - | - | 3 | - | 100% |  |\n"
        "\n"
        "3 more parameter(s) not shown.\n"
    )
    assert "No tracked checkpoint changed." in render(DiffReport("a", "b", ()), "markdown")


def test_json_has_every_key_and_no_nan():
    doc = json.loads(render(REPORT, "json"))
    assert doc["version"] == 1 and (doc["old"], doc["new"]) == ("HEAD~1", "HEAD")
    (f,) = doc["files"]
    assert f["counts"] == {"added": 1, "removed": 1, "modified": 4, "unchanged": 2}
    params = {p["name"]: p for p in f["params"]}
    assert len({tuple(p) for p in f["params"]}) == 1  # the same keys, in the same order
    first = params["layers.0.weight"]
    assert first["delta_l2"] == 0.5 and first["relative_change"] == 0.25
    assert first["cosine"] == 4.0 / (2.0 * 2.1) and first["fraction_changed"] == 0.25
    bad = params["bad|name"]
    assert (bad["delta_l2"], bad["max_abs_delta"], bad["nan_count"]) == (None, None, 2)
    assert params["step"]["max_abs_delta"] == 3 and params["step"]["delta_l2"] is None
    head = params["head"]
    assert (head["dtype"], head["old_dtype"], head["shape"], head["old_shape"]) == (
        "F16",
        "F32",
        [2, 8],
        [4, 4],
    )
    assert params["mask"]["dtype"] == "BOOL" and params["extra"]["old_dtype"] is None
