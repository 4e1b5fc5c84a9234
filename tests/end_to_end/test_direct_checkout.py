"""Direct checkout (git_theta/direct.py) through every Git command that writes the work tree.

The threshold is lowered so the small test checkpoint takes the direct path; the trace file
(GIT_THETA_CHECKOUT_TRACE) says which path wrote it and for which Git command. Each test
checks the file is byte-identical to the committed version's smudge (`git cat-file
--filters`, which takes the smudge path) and that `git status` is clean.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from testing.checkpoints import random_params, write_safetensors

MODEL = "model.safetensors"


class Direct:
    def __init__(self, scratch, tmp_path: Path) -> None:
        self.s = scratch
        self.env = scratch.env
        self.trace = tmp_path / "trace"
        self.env.env["GIT_THETA_DIRECT_CHECKOUT_BYTES"] = "1024"
        self.env.env["GIT_THETA_CHECKOUT_TRACE"] = str(self.trace)
        self.v1 = scratch.commit("v1")
        self.v2 = scratch.commit("v2", scratch.edited("embed.weight"))

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return self.env.git(*args, cwd=cwd or self.s.repo)

    def lines(self) -> list[str]:
        out = self.trace.read_text().splitlines() if self.trace.exists() else []
        self.trace.unlink(missing_ok=True)
        return out

    def smudged(self, rev: str, cwd: Path | None = None) -> bytes:
        proc = self.env.run(
            ["git", "cat-file", "--filters", f"{rev}:{MODEL}"], cwd=cwd or self.s.repo
        )
        return proc.stdout

    def assert_direct(self, command: str, rev: str = "HEAD", cwd: Path | None = None) -> None:
        repo = cwd or self.s.repo
        lines = self.lines()
        assert f"direct {command} {MODEL}" in lines, lines
        assert f"finished - {MODEL}" in lines, lines
        assert (repo / MODEL).read_bytes() == self.smudged(rev, repo)
        assert self.git("status", "--porcelain", cwd=repo) == ""


@pytest.fixture
def d(scratch, tmp_path) -> Direct:
    return Direct(scratch, tmp_path)


def test_checkout(d):
    d.git("checkout", "-q", "HEAD~1")
    d.assert_direct("checkout")
    assert (d.s.repo / MODEL).read_bytes() == d.v1


def test_the_finisher_records_the_checkpoints_stat_data_in_the_index(d):
    d.git("checkout", "-q", "HEAD~1")
    assert "indexed 1 -" in d.lines()
    # diff-files compares stat data only (it never refreshes the index): the entry describes
    # the checkpoint now in the work tree, though no Git command read that file.
    assert d.git("diff-files", "--name-only", "--", MODEL) == ""
    st = os.stat(d.s.path)
    debug = d.git("ls-files", "--debug", MODEL)
    assert f"mtime: {int(st.st_mtime)}:{st.st_mtime_ns % 10**9}" in debug, debug
    assert f"ino: {st.st_ino}" in debug and f"size: {st.st_size}\t" in debug, debug
    assert d.s.path.read_bytes() == d.v1
    assert d.git("status", "--porcelain") == ""


def test_a_split_index_is_refreshed_through_git(d):
    d.git("config", "core.splitIndex", "true")
    d.git("update-index", "--split-index")
    d.git("checkout", "-q", "HEAD~1")
    lines = d.lines()
    assert "indexed 0 -" in lines and f"direct checkout {MODEL}" in lines, lines
    assert d.git("diff-files", "--name-only", "--", MODEL) == ""
    assert d.s.path.read_bytes() == d.v1
    assert d.git("status", "--porcelain") == ""


def test_switch(d):
    d.git("switch", "-q", "-c", "old", "HEAD~1")
    d.assert_direct("switch")


def test_restore(d):
    write_safetensors(d.s.path, random_params({"x": ("F32", (4,))}))
    d.git("restore", MODEL)
    d.assert_direct("restore")
    assert (d.s.repo / MODEL).read_bytes() == d.v2


def test_reset_hard(d):
    d.git("reset", "-q", "--hard", "HEAD~1")
    d.assert_direct("reset")


def test_stash_and_pop(d):
    edited = d.s.write(d.s.edited("norm.scale"))
    d.git("stash", "-q")
    d.assert_direct("reset")  # `git stash` runs `git reset --hard` as a child
    d.git("stash", "pop", "-q")
    lines = d.lines()
    assert f"direct stash {MODEL}" in lines and f"finished - {MODEL}" in lines, lines
    assert d.s.path.read_bytes() == edited
    assert d.git("status", "--porcelain") == f" M {MODEL}\n"


def test_merge(d):
    d.git("checkout", "-q", "-b", "side", "HEAD~1")
    d.lines()
    (d.s.repo / "notes.txt").write_text("notes\n")
    d.git("add", "notes.txt")
    d.git("commit", "-q", "-m", "notes")
    d.git("merge", "-q", "--no-edit", "main")
    d.assert_direct("merge")
    assert d.s.path.read_bytes() == d.v2


def test_cherry_pick(d):
    d.git("checkout", "-q", "-b", "side", "HEAD~1")
    d.lines()
    d.git("cherry-pick", "main")
    d.assert_direct("cherry-pick")
    assert d.s.path.read_bytes() == d.v2


def test_rebase(d):
    d.git("checkout", "-q", "-b", "side", "HEAD~1")
    (d.s.repo / "notes.txt").write_text("notes\n")
    d.git("add", "notes.txt")
    d.git("commit", "-q", "-m", "notes")
    d.lines()
    d.git("rebase", "-q", "main")
    d.assert_direct("rebase")
    assert d.s.path.read_bytes() == d.v2


def test_clone_and_pull(d):
    clone = d.env.root / "clone"
    d.git("reset", "-q", "--hard", "HEAD~1")
    d.lines()
    d.env.git("clone", "-q", str(d.s.repo), str(clone), cwd=d.env.root)
    d.assert_direct("clone", cwd=clone)
    assert (clone / MODEL).read_bytes() == d.v1
    d.git("reset", "-q", "--hard", "HEAD@{1}")
    d.lines()
    d.git("pull", "-q", "--no-rebase", "origin", "main", cwd=clone)
    d.assert_direct("merge", cwd=clone)  # `git pull` runs `git merge` as a child
    assert (clone / MODEL).read_bytes() == d.v2


def test_worktree_add(d):
    other = d.env.root / "other"
    d.git("worktree", "add", "-q", str(other), "HEAD~1")
    d.assert_direct("reset", cwd=other)  # `git worktree add` runs `git reset --hard`
    assert (other / MODEL).read_bytes() == d.v1


def test_sparse_checkout(d):
    d.git("sparse-checkout", "set", "--no-cone", "/.gitattributes")
    assert not d.s.path.exists()
    d.lines()
    d.git("sparse-checkout", "disable")
    d.assert_direct("sparse-checkout")


def test_below_the_threshold_and_other_commands_take_the_smudge_path(d):
    d.env.env["GIT_THETA_DIRECT_CHECKOUT_BYTES"] = str(10**9)
    d.git("checkout", "-q", "HEAD~1")
    assert d.lines() == [f"smudge checkout {MODEL}"]
    assert d.s.path.read_bytes() == d.v1
    d.env.env["GIT_THETA_DIRECT_CHECKOUT_BYTES"] = "1024"
    d.s.path.unlink()
    d.git("checkout-index", "-f", MODEL)  # may write elsewhere (--prefix): never direct
    assert d.lines() == [f"smudge checkout-index {MODEL}"]
    assert d.s.path.read_bytes() == d.v1
    assert d.git("status", "--porcelain") == ""


def test_a_file_changed_before_the_finish_is_left_alone(d):
    """Only a file still holding the metadata Git wrote is replaced; the cleaner's record of a
    written file stops matching as soon as the file changes."""
    d.git("checkout", "-q", "HEAD~1")
    d.lines()
    edited = d.s.write(d.s.edited("step"))
    assert d.git("status", "--porcelain") == f" M {MODEL}\n"
    d.git("checkout", "-q", MODEL)
    d.assert_direct("checkout", cwd=None)
    assert d.s.path.read_bytes() == d.v1 != edited


def _descendants(pid: int) -> list[int]:
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += [int(child), *_descendants(int(child))]
    return found


def _leftovers(repo: Path) -> list[Path]:
    return [p for p in repo.iterdir() if p.name.startswith(".") and MODEL in p.name]


def test_a_filter_killed_mid_write_leaves_no_torn_file_and_git_theta_checkout_finishes(d):
    env = {**d.env.env, "GIT_THETA_TEST_FINISH_PAUSE": "4096"}
    git = subprocess.Popen(
        ["git", "checkout", "-q", "HEAD~1"], cwd=d.s.repo, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size >= 4096 for p in _leftovers(d.s.repo)):
            assert time.monotonic() < deadline and git.poll() is None
            time.sleep(0.05)
        filters = [
            p
            for p in _descendants(git.pid)
            if b"filter-process" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert filters
        for pid in filters:
            os.kill(pid, signal.SIGKILL)
        _, stderr = git.communicate(timeout=60)
    finally:
        if git.poll() is None:
            git.kill()
    # The smudge failed, so Git's checkout failed as on the smudge path: Git had removed the
    # old file, and wrote nothing in its place; HEAD and the index are unchanged.
    assert git.returncode != 0 and b"filter-process" in stderr
    assert not d.s.path.exists()
    assert _leftovers(d.s.repo)  # the killed filter's partial file, under its own name
    d.lines()
    d.env.theta("checkout", cwd=d.s.repo)
    assert f"finished - {MODEL}" in d.lines()
    assert d.s.path.read_bytes() == d.v2 == d.smudged("HEAD")
    assert not _leftovers(d.s.repo)
    assert d.git("status", "--porcelain") == ""


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_under_an_address_space_limit_only_the_direct_path_checks_out(gitenv, tmp_path):
    """Git holds a smudged checkpoint in one buffer: under `ulimit -v` 400 MiB (enough for
    Python and numpy, measured: 150 MiB is not), a 384 MiB checkpoint fails on the smudge
    path, and checks out byte-identical on the direct path."""
    repo = gitenv.init_repo(track=("*.safetensors",))
    rng = np.random.default_rng(0)
    params = {f"t{i}": ("F32", rng.random(2 * 1024 * 1024, dtype=np.float32)) for i in range(48)}
    data = write_safetensors(repo / MODEL, params)
    gitenv.git("add", MODEL, cwd=repo)
    gitenv.git("commit", "-q", "-m", "big", cwd=repo)
    gitenv.git("rm", "-q", MODEL, cwd=repo)
    gitenv.git("commit", "-q", "-m", "gone", cwd=repo)
    limit = 400 * 1024 * 1024

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def checkout(direct_bytes: str) -> subprocess.CompletedProcess[bytes]:
        gitenv.git("reset", "-q", "--hard", "main", cwd=repo)
        env = {**gitenv.env, "GIT_THETA_DIRECT_CHECKOUT_BYTES": direct_bytes}
        return subprocess.run(
            ["git", "checkout", "-q", "HEAD~1"],
            cwd=repo,
            env=env,
            capture_output=True,
            preexec_fn=limited,
            check=False,
        )

    smudge = checkout("0")
    # Git's buffer ("fatal: Out of memory, realloc failed") or the filter's own decoding
    # running out beside it: either way the smudge path cannot write the file.
    assert smudge.returncode != 0, smudge.stderr
    direct = checkout("1024")
    assert direct.returncode == 0 and not direct.stderr, direct.stderr
    assert (repo / MODEL).read_bytes() == data
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""


def test_revert(d):
    d.git("revert", "--no-edit", "HEAD")
    d.assert_direct("revert")
    assert d.s.path.read_bytes() == d.v1


def test_pull_rebase(d):
    clone = d.env.root / "clone"
    d.env.git("clone", "-q", str(d.s.repo), str(clone), cwd=d.env.root)
    d.env.git("reset", "-q", "--hard", "HEAD~1", cwd=clone)
    (clone / "notes.txt").write_text("notes\n")
    d.env.git("add", "notes.txt", cwd=clone)
    d.env.git("commit", "-q", "-m", "notes", cwd=clone)
    d.lines()
    d.git("pull", "-q", "--rebase", "origin", "main", cwd=clone)
    d.assert_direct("rebase", cwd=clone)  # `git pull --rebase` runs `git rebase` as a child
    assert (clone / MODEL).read_bytes() == d.v2


def test_a_merge_that_stops_on_a_conflict_and_its_abort(d):
    """No hook runs for either; the filter's own finish covers both."""
    d.git("checkout", "-q", "-b", "side", "HEAD~1")
    d.s.commit("side", d.s.edited("norm.scale"))  # v2's embed.weight too: merges cleanly
    (d.s.repo / "notes.txt").write_text("side\n")
    d.git("add", "notes.txt")
    d.git("commit", "-q", "-m", "side notes")
    d.git("checkout", "-q", "main")
    (d.s.repo / "notes.txt").write_text("main\n")
    d.git("add", "notes.txt")
    d.git("commit", "-q", "-m", "main notes")
    d.git("checkout", "-q", "HEAD~1")  # before main's notes: only the checkpoint differs
    d.git("checkout", "-q", "main")
    d.lines()
    merged = d.env.run(["git", "merge", "--no-edit", "side"], cwd=d.s.repo, check=False)
    assert merged.returncode != 0, merged.stdout  # notes.txt conflicts
    assert d.git("status", "--porcelain") == f"M  {MODEL}\nAA notes.txt\n"
    lines = d.lines()
    assert f"direct merge {MODEL}" in lines and f"finished - {MODEL}" in lines, lines
    assert d.s.path.read_bytes() == d.smudged("")  # the merged checkpoint, from the index
    d.git("merge", "--abort")
    d.assert_direct("merge")
    assert d.s.path.read_bytes() == d.v2


def test_am(d):
    patch = d.env.run(["git", "format-patch", "--binary", "-1", "--stdout"], cwd=d.s.repo).stdout
    d.git("reset", "-q", "--hard", "HEAD~1")
    d.lines()
    d.env.run(["git", "am", "-q"], cwd=d.s.repo, input=patch)
    d.assert_direct("am")
    assert d.s.path.read_bytes() == d.v2
