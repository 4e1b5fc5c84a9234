"""git_theta/git/invoker.py on real processes: a child started by a real `git` (through the
shell git uses for a command line with spaces, and directly) finds that git's subcommand."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from git_theta.git.invoker import git_subcommand, writes_work_tree

PROBE = (
    f"{sys.executable} -c 'import json; from git_theta.git.invoker import find_invoker; "
    "i = find_invoker(); print(json.dumps(i and list(i.argv)))'"
)


def _probe(gitenv, *git_args: str) -> list[str] | None:
    """Run the probe as a git alias (`!cmd` runs through the shell, as filters do)."""
    proc = gitenv.run(["git", "-c", f"alias.probe=!{PROBE}", *git_args, "probe"], cwd=gitenv.root)
    return json.loads(proc.stdout)


def test_a_process_started_by_git_through_a_shell_finds_that_git(gitenv):
    argv = _probe(gitenv, "--no-pager", "-c", "x.y=1")
    assert argv is not None and argv[-4:] == ["--no-pager", "-c", "x.y=1", "probe"]
    assert git_subcommand(argv) == ("probe", ())


def test_a_process_not_under_git_finds_none():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from git_theta.git.invoker import find_invoker; print(find_invoker())",
        ],
        capture_output=True,
        check=True,
    )
    assert out.stdout.strip() == b"None"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["checkout", "main"], ("checkout", ("main",))),
        (["-C", "dir", "-c", "a=b", "--git-dir", "g", "switch", "x"], ("switch", ("x",))),
        (
            ["--git-dir=g", "--work-tree=w", "--no-pager", "-P", "reset", "--hard"],
            ("reset", ("--hard",)),
        ),
        (["--literal-pathspecs"], (None, ())),
    ],
)
def test_global_options_are_skipped(argv, expected):
    assert git_subcommand(argv) == expected


@pytest.mark.parametrize(
    ("command", "args", "direct"),
    [
        ("checkout", ("main",), True),
        ("checkout", ("-p",), False),
        ("restore", ("--patch", "f"), False),
        ("stash", (), True),
        ("stash", ("-q",), True),
        ("stash", ("pop",), True),
        ("stash", ("show", "-p"), False),
        ("clone", ("a", "b"), True),
        ("checkout-index", ("-a",), False),
        ("read-tree", ("-u", "HEAD"), False),
        ("archive", ("HEAD",), False),
        ("cat-file", ("--filters", "HEAD:f"), False),
        ("diff", (), False),
        (None, (), False),
    ],
)
def test_which_commands_write_the_work_tree(command, args, direct):
    assert writes_work_tree(command, args) is direct
