"""Check rules: the file formats, their errors (FILE:LINE:), and evaluation."""

from __future__ import annotations

import math

import pytest

from git_theta.diffing.check import evaluate
from git_theta.diffing.numeric import DeltaStats, Nonfinite
from git_theta.diffing.records import FileDiff, ParamDiff, ParamInfo
from git_theta.diffing.rules import Rules, load_rules
from git_theta.errors import ConfigError


def test_no_file_gives_default_rules(tmp_path):
    assert load_rules(tmp_path) == Rules()


def test_git_theta_toml(tmp_path):
    (tmp_path / ".git-theta.toml").write_text(
        '[check]\nfrozen = ["embed.*"]\nmax-relative-change = 1\nno-nan = true\n'
    )
    (tmp_path / "pyproject.toml").write_text("[tool.git-theta.check]\nno-nan = false\n")
    assert load_rules(tmp_path) == Rules(("embed.*",), 1.0, True, False, ".git-theta.toml")


def test_pyproject_table_and_command_line_on_top(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.git-theta.check]\nfrozen = ["a"]\nallow-shape-change = true\n'
    )
    rules = load_rules(tmp_path)
    assert rules == Rules(("a",), None, False, True, "pyproject.toml")
    merged = rules.merged(frozen=("b", "a"), max_relative_change=0.5, no_nan=True)
    assert merged == Rules(("a", "b"), 0.5, True, True, "pyproject.toml")


def test_pyproject_without_our_table_is_ignored(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_rules(tmp_path) == Rules()


@pytest.mark.parametrize(
    "name,text,message",
    [
        (
            ".git-theta.toml",
            "[check]\nfrozen = [\n  'a',\n  b\n]\n",
            ".git-theta.toml:4: invalid TOML: Invalid value (column 3)",
        ),
        (
            ".git-theta.toml",
            "# rules\n[check]\nfrozen = []\nmax-relative = 0.1\n",
            ".git-theta.toml:4: unknown key 'max-relative' in [check]; valid keys: frozen, "
            "max-relative-change, no-nan, allow-shape-change",
        ),
        (
            "pyproject.toml",
            '[project]\nname = "x"\n[tool."git-theta".check]\nno-nan = "yes"\n',
            "pyproject.toml:4: no-nan must be true or false",
        ),
        (
            "pyproject.toml",
            "[tool.git-theta.check]\n\nmax-relative-change = -1\n",
            "pyproject.toml:3: max-relative-change must be a number >= 0",
        ),
        (
            ".git-theta.toml",
            "[check]\nfrozen = 'embed.*'\n",
            ".git-theta.toml:2: frozen must be a list of glob patterns (strings)",
        ),
        (".git-theta.toml", "check = 3\n", ".git-theta.toml:1: [check] must be a table"),
    ],
)
def test_malformed_files_name_their_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path)
    assert str(info.value) == message


H = "xxh3_128:" + "0" * 32


def p(name, status, *, shape=(4,), new_shape=None, stats=None, nonfinite=None):
    old = None if status == "added" else ParamInfo("F32", shape, H)
    new = None if status == "removed" else ParamInfo("F32", new_shape or shape, H)
    return ParamDiff(name, status, old, new, stats=stats, nonfinite=nonfinite)


def test_evaluate_each_rule():
    files = [
        FileDiff(
            "m.safetensors",
            (
                p("embed.w", "modified", stats=DeltaStats(4, 1, 0.1, 0.1, 1.0, 1.0, 1.0)),
                p("big", "modified", stats=DeltaStats(4, 4, 1.0, 2.0, 1.0, 2.0, 1.0)),
                p(
                    "undefined",
                    "modified",
                    stats=DeltaStats(4, 4, math.nan, math.nan, 1.0, 1.0, 1.0),
                ),
                p("nan", "added", nonfinite=Nonfinite(1, 2)),
                p("reshaped", "modified", new_shape=(2, 2)),
                p("embed.gone", "removed"),
            ),
        )
    ]
    rules = Rules(frozen=("embed.*",), max_relative_change=0.5, no_nan=True)
    assert [str(v) for v in evaluate(rules, files)] == [
        "m.safetensors: embed.w: frozen: modified (frozen by 'embed.*')",
        "m.safetensors: big: max-relative-change: 2 > 0.5",
        "m.safetensors: undefined: max-relative-change: nan (the change is undefined) > 0.5",
        "m.safetensors: nan: no-nan: 1 NaN, 2 Inf",
        "m.safetensors: reshaped: shape-change: [4] -> [2, 2]",
        "m.safetensors: embed.gone: frozen: removed (frozen by 'embed.*')",
    ]
    assert evaluate(Rules(allow_shape_change=True), files) == []
