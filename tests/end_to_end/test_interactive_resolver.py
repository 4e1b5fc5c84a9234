"""The interactive resolver through a pseudo-terminal: a real `git merge` whose merge driver
asks at /dev/tty, and `git theta resolve --interactive`."""

from __future__ import annotations

import sys

import numpy as np
import pexpect
import pytest

from tests.end_to_end.test_merge import F32, Branches, edited

PROMPT = "theta-merge> "
TIMEOUT = 60


@pytest.fixture
def conflicted(gitenv) -> Branches:
    b = Branches(gitenv, F32)
    b.diverge(
        edited(a=F32["a"] + 2, b=F32["b"] + 1, c=F32["c"] * 2),
        edited(a=F32["a"] + 4, b=F32["b"] - 1, c=F32["c"] * 4),
    )
    return b


def spawn(b: Branches, *args: str) -> pexpect.spawn:
    env = {**b.env.env, "GIT_TERMINAL_PROMPT": "1", "TERM": "dumb"}
    child = pexpect.spawn(
        args[0], list(args[1:]), cwd=str(b.repo), env=env, encoding="utf-8", timeout=TIMEOUT
    )
    child.logfile_read = sys.stdout  # shown by pytest when a test fails
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_merge_asks_per_parameter_and_per_pattern(conflicted):
    child = spawn(conflicted, "git", "merge", "--no-edit", "theirs")
    child.expect("3 parameters changed differently on both sides")
    # a: ours moved it by 2 and theirs by 4 in every element, in the same direction.
    child.expect(r"a\s+\[2, 3\]\s+F32\s+4\.899\s+9\.798\s+\+1\.000")
    child.expect(r"b\s+\[4\]\s+F32\s+2\s+2\s+-1\.000")
    child.expect_exact(PROMPT)
    child.sendline("1 average")
    child.expect_exact("average options: weights=")
    child.expect_exact("change (key=value ..., Enter keeps these): ")
    child.sendline("weights=1,3")
    child.expect_exact("average weights=1,3: a (2 left)")
    child.expect_exact(PROMPT)
    child.sendline("[bc] task-arithmetic lambda=0.5")
    child.expect_exact("task-arithmetic lambda=0.5: b, c (0 left)")
    child.expect_exact("merge with these choices? [Y]es, [n]o to change them, [q]uit: ")
    child.sendline("y")
    child.expect_exact("model.safetensors: merged")
    assert finish(child) == 0
    got = conflicted.tensors()
    np.testing.assert_allclose(got["a"], F32["a"] + 3.5)  # 0.25 * 2 + 0.75 * 4
    np.testing.assert_allclose(got["b"], F32["b"])  # 0.5 * (1 - 1)
    np.testing.assert_allclose(got["c"], F32["c"] * 3)  # c + 0.5 * (c + 3c)
    assert conflicted.git("status", "--porcelain").stdout == b""


def test_abort_leaves_a_normal_conflict_then_resolve_interactively(conflicted):
    ours_blob = conflicted.git("cat-file", "blob", "HEAD:model.safetensors").stdout
    child = spawn(conflicted, "git", "merge", "--no-edit", "theirs")
    child.expect_exact(PROMPT)
    child.sendline("1 take-theirs")
    child.expect_exact("(2 left)")
    child.expect_exact(PROMPT)
    child.sendline("q")
    child.expect_exact("aborted; the merge stays conflicted")
    assert finish(child) == 1
    stages = conflicted.git("ls-files", "-u", "model.safetensors").stdout.decode().splitlines()
    assert [line.split()[2] for line in stages] == ["1", "2", "3"]
    assert conflicted.git("show", ":2:model.safetensors").stdout == ours_blob
    np.testing.assert_array_equal(conflicted.tensors()["a"], F32["a"] + 2)

    child = spawn(conflicted, "git-theta", "resolve", "model.safetensors", "--interactive")
    child.expect_exact(PROMPT)
    child.sendline("nothing.* average")
    child.expect_exact("no conflicting parameter matches 'nothing.*'")
    child.sendline("2 take-ours")
    child.expect_exact("(2 left)")
    child.sendline("all take-theirs")
    child.expect_exact("take-theirs: a, c (0 left)")
    child.expect_exact("[q]uit: ")
    child.sendline("")
    child.expect_exact("resolved model.safetensors with the chosen strategies; staged")
    assert finish(child) == 0
    got = conflicted.tensors()
    np.testing.assert_array_equal(got["a"], F32["a"] + 4)
    np.testing.assert_array_equal(got["b"], F32["b"] + 1)
    assert conflicted.git("ls-files", "-u").stdout == b""


def test_ctrl_d_aborts_and_no_terminal_keeps_the_old_behaviour(conflicted):
    child = spawn(conflicted, "git", "merge", "--no-edit", "theirs")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect_exact("aborted; the merge stays conflicted")
    assert finish(child) == 1
    conflicted.git("merge", "--abort")
    # Without a terminal (output captured, as in CI) nothing is asked.
    proc = conflicted.merge()
    assert proc.returncode == 1
    assert "conflicting parameters: a (modified on both sides)" in proc.stderr.decode()
    proc = conflicted.env.theta(
        "resolve", "model.safetensors", "--interactive", cwd=conflicted.repo, check=False
    )
    # GitEnv sets GIT_TERMINAL_PROMPT=0, git's switch for "never prompt".
    assert proc.stderr == (
        b"git-theta: error: --interactive needs a terminal (/dev/tty); use --strategy instead\n"
    )
