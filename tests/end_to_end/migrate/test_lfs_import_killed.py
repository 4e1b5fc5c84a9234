"""`git theta migrate import` killed (SIGKILL) while it downloads from the LFS server, while
fast-import rewrites, just before the refs move, and just after: until the one `update-ref`
transaction every ref, the index, the work tree and `git status` are as they were and Git
LFS still checks out every version; the transaction moves all refs or none; the temporary
refs are gone after the next run, which completes, every version byte-identical (issue 18,
"Bad input")."""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.fault_proxy import Fault
from testing.gitenv import GitEnv
from testing.lfs_history import published_clone

pytestmark = [
    pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is not installed"),
    pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc"),
]

MODEL = "model.safetensors"
IMPORT = ["git-theta", "migrate", "import", "--include", "*.safetensors", "--everything"]
TEMP = "refs/theta-migrate/"
WAIT = 60.0


def _tag(env: GitEnv, repo: Path) -> None:
    """An annotated tag on main~1 and a lightweight one on side, as releases are tagged."""
    env.git("tag", "-a", "-m", "release one", "v1", "main~1", cwd=repo)
    env.git("tag", "light", "side", cwd=repo)


def _state(env: GitEnv, repo: Path) -> dict[str, object]:
    """Everything a user sees of the repository: refs (but the migration's temporary ones),
    HEAD, the index, `git status` and every work-tree file's bytes."""
    refs = env.git("for-each-ref", "--format=%(refname) %(objecttype) %(objectname)", cwd=repo)
    return {
        "refs": [line for line in refs.splitlines() if not line.startswith(TEMP)],
        "head": env.git("symbolic-ref", "HEAD", cwd=repo),
        "index": env.git("ls-files", "-s", cwd=repo),
        "status": env.git("status", "--porcelain=v2", "--branch", cwd=repo),
        "files": {
            str(p.relative_to(repo)): p.read_bytes()
            for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts[:1]
        },
    }


def _tips(env: GitEnv, repo: Path) -> dict[str, str]:
    """The LFS oid of the checkpoint at each branch and tag."""
    refs = env.git("for-each-ref", "--format=%(refname)", "refs/heads/", "refs/tags/", cwd=repo)
    out = {}
    for ref in refs.split():
        pointer = env.git("show", f"{ref}:{MODEL}", cwd=repo)
        out[ref] = pointer.split("oid sha256:")[1].split()[0]
    return out


def _session_alive(sid: int) -> bool:
    """Whether a process of session `sid` is still running (zombies aside)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            return True
    return False


@contextlib.contextmanager
def _running(env: GitEnv, repo: Path, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """The migration started in a session of its own; whatever of it still runs at the end
    is killed."""
    proc = subprocess.Popen(
        IMPORT,
        cwd=repo,
        env={**env.env, **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_pause(proc: subprocess.Popen[bytes], point: str) -> None:
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + WAIT
    while f"git-theta: paused at {point}\n".encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen
        if select.select([proc.stderr], [], [], left)[0]:
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, f"exited {proc.wait()} before the pause: {seen!r}"
            seen += chunk


def _kill(proc: subprocess.Popen[bytes], *, group: bool) -> None:
    """SIGKILL git-theta alone (as `kill -9` or the OOM killer do; its git children live on
    until their pipes close) or with its children (a closed terminal), and wait until none
    of them runs."""
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait()
    deadline = time.monotonic() + WAIT
    while _session_alive(proc.pid):
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("git-theta's children outlived it by a minute")
        time.sleep(0.05)
    assert proc.returncode == -signal.SIGKILL


def _kill_at(env: GitEnv, repo: Path, point: str, *, group: bool = False) -> None:
    """Run the migration until it stops at `point` (settings.MIGRATE_PAUSE_ENV), then kill it."""
    with _running(env, repo, GIT_THETA_TEST_MIGRATE_PAUSE=point) as proc:
        _wait_for_pause(proc, point)
        _kill(proc, group=group)


def _assert_tips(env: GitEnv, repo: Path, tips: dict[str, str]) -> None:
    """Each branch and tag checks out its checkpoint byte-identical to the LFS version."""
    for ref, oid in tips.items():
        env.git("checkout", "-q", ref, cwd=repo)
        assert hashlib.sha256((repo / MODEL).read_bytes()).hexdigest() == oid, ref


def _assert_lfs_checks_out(env: GitEnv, repo: Path, tips: dict[str, str]) -> None:
    """Git LFS checks out the checkpoint of every branch and tag, then the branch again."""
    head = env.git("symbolic-ref", "--short", "HEAD", cwd=repo).strip()
    _assert_tips(env, repo, tips)
    env.git("checkout", "-q", head, cwd=repo)


def _assert_whole_lfs_objects(repo: Path) -> None:
    """Every object in .git/lfs/objects holds the bytes its name promises."""
    for p in (repo / ".git/lfs/objects").rglob("*"):
        if p.is_file():
            assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name, p


def _assert_rerun_completes(env, repo: Path, tips: dict[str, str], versions) -> None:
    """A second run converts everything: no temporary ref left, every branch and tag (an
    annotated one still annotated) checks out its LFS version byte-identical, and so does
    every rewritten commit."""
    # Branches and tags only: a clone's origin/* keep the LFS history.
    commits = len(env.git("rev-list", "--branches", "--tags", cwd=repo).split())
    env.run(IMPORT, cwd=repo)
    assert env.git("for-each-ref", TEMP, cwd=repo) == ""
    assert env.git("status", "--porcelain", cwd=repo) == ""
    assert env.git("cat-file", "-t", "v1", cwd=repo).strip() == "tag"
    rewritten = env.git("rev-list", "--branches", "--tags", cwd=repo).split()
    assert len(rewritten) == commits and not set(rewritten) & set(versions)
    for ref, oid in tips.items():
        assert "filter=theta" in env.git("show", f"{ref}:.gitattributes", cwd=repo)
        env.git("checkout", "-q", ref, cwd=repo)
        assert hashlib.sha256((repo / MODEL).read_bytes()).hexdigest() == oid, ref
        assert env.git("status", "--porcelain", cwd=repo) == ""
    expected = set(versions.values())
    for commit in rewritten:
        env.git("checkout", "-q", commit, cwd=repo)
        assert (repo / MODEL).read_bytes() in expected
        assert env.git("status", "--porcelain", cwd=repo) == ""


def test_killed_mid_download_leaves_refs_and_lfs_store_whole(gitenv, lfs_repo, giftless, proxy):
    repo, versions = lfs_repo
    _tag(gitenv, repo)
    url = giftless.lfs_url("org/migrate-killed").replace(giftless.url, proxy.url)
    clone = published_clone(gitenv, repo, url)
    tips = _tips(gitenv, clone)
    before = _state(gitenv, clone)
    held = len([p for p in (clone / ".git/lfs/objects").rglob("*") if p.is_file()])
    assert held == 1  # main's version; the other four are only on the server

    # The first object download stops half-way: the migration is caught inside it.
    proxy.faults = [Fault("hold", "/objects/storage/", method="GET", times=1)]
    try:
        with _running(gitenv, clone) as proc:
            assert proxy.holding.wait(WAIT)
            _kill(proc, group=False)
    finally:
        proxy.release.set()
        proxy.faults = []
    assert _state(gitenv, clone) == before
    assert gitenv.git("for-each-ref", TEMP, cwd=clone) == ""
    _assert_whole_lfs_objects(clone)
    _assert_lfs_checks_out(gitenv, clone, tips)
    _assert_rerun_completes(gitenv, clone, tips, versions)


@pytest.mark.parametrize(
    ("point", "group"),
    [("rewrite", False), ("rewrite", True), ("refs", False)],
    ids=["rewrite-alone", "rewrite-with-children", "before-refs"],
)
def test_killed_before_the_refs_move_leaves_everything_as_it_was(gitenv, lfs_repo, point, group):
    repo, versions = lfs_repo
    _tag(gitenv, repo)
    tips = _tips(gitenv, repo)
    before = _state(gitenv, repo)
    _kill_at(gitenv, repo, point, group=group)
    assert _state(gitenv, repo) == before
    # Temporary refs may be left (fast-import writes what it has when its input ends); they
    # live apart from branches and tags, and the next run removes them.
    assert gitenv.git("branch", "--list", "--all", cwd=repo).split() == ["*", "main", "side"]
    assert gitenv.git("tag", "--list", cwd=repo).split() == ["light", "v1"]
    _assert_lfs_checks_out(gitenv, repo, tips)
    _assert_rerun_completes(gitenv, repo, tips, versions)


def test_the_rerun_is_not_tripped_by_the_temporary_refs_a_kill_left(gitenv, lfs_repo):
    """A temporary ref left by a killed run must not stand in the way of the next run's refs:
    here `exp` was renamed to `exp/one` in between (a ref cannot be both file and folder)."""
    repo, _ = lfs_repo
    gitenv.git("branch", "exp", "side", cwd=repo)
    _kill_at(gitenv, repo, "refs")
    assert gitenv.git("for-each-ref", "--format=%(refname)", TEMP + "refs/heads/exp", cwd=repo)
    gitenv.git("branch", "-m", "exp", "exp/one", cwd=repo)
    tips = _tips(gitenv, repo)
    gitenv.run(IMPORT, cwd=repo)
    assert gitenv.git("for-each-ref", TEMP, cwd=repo) == ""
    _assert_tips(gitenv, repo, tips)
    assert "filter=theta" in gitenv.git("show", "exp/one:.gitattributes", cwd=repo)


def test_killed_after_the_refs_move_has_moved_them_all(gitenv, lfs_repo):
    """After the one `update-ref` transaction only the work tree is left to check out: every
    branch and tag is rewritten (none half), and `git reset --hard` finishes the job."""
    repo, _ = lfs_repo
    _tag(gitenv, repo)
    tips = _tips(gitenv, repo)
    before = _state(gitenv, repo)
    _kill_at(gitenv, repo, "checkout")
    assert gitenv.git("for-each-ref", TEMP, cwd=repo) == ""
    after = _state(gitenv, repo)
    assert after["files"] == before["files"] and after["index"] == before["index"]
    old, new = (dict(line.rsplit(" ", 2)[::2] for line in s["refs"]) for s in (before, after))
    assert old.keys() == new.keys() and not set(old.values()) & set(new.values())
    gitenv.git("reset", "-q", "--hard", cwd=repo)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    _assert_tips(gitenv, repo, tips)
