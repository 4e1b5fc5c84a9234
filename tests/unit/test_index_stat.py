"""git/index_stat.py against real Git: the index it writes is the one `git update-index
--refresh` writes, in every index version and both object formats, and it stands back where
rewriting the index is not safe."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from git_theta.git.index_stat import blob_id, set_stat
from testing.gitenv import GitEnv

OLD = time.time() - 1000  # file times well before any index write: no entry is racy
LONG = "/".join(["d" * 200] * 21) + "/long.bin"


def _repo(tmp_path: Path, *, version: int = 2, object_format: str = "sha1") -> tuple[GitEnv, Path]:
    env = GitEnv(tmp_path, install=False)
    repo = tmp_path / "r"
    env.git("init", "-q", f"--object-format={object_format}", str(repo), cwd=tmp_path)
    names = ["a.bin", "dir/b.bin", "dir/sub/c.bin", "dir/sub/c2.bin", "z" * 200 + ".bin"]
    for i, name in enumerate(names):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(bytes([i]) * (100 + i))
        os.utime(repo / name, (OLD, OLD))
    env.git("add", ".", cwd=repo)
    # A path longer than the 12-bit length field (an entry only: no file system takes it).
    blob = env.git("hash-object", "-w", "a.bin", cwd=repo).strip()
    env.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{LONG}", cwd=repo)
    env.git("commit", "-q", "-m", "files", cwd=repo)
    if version == 3:
        (repo / "new.bin").write_bytes(b"intent")
        env.git("add", "-N", "new.bin", cwd=repo)  # an intent-to-add entry: extended flags
    env.git("update-index", f"--index-version={version}", cwd=repo)
    return env, repo


def _debug(env: GitEnv, repo: Path) -> str:
    return env.git("ls-files", "--debug", cwd=repo)


def _touch(repo: Path, name: str, when: float) -> os.stat_result:
    os.utime(repo / name, (when, when))
    return os.stat(repo / name)


@pytest.mark.parametrize(
    ("version", "object_format"),
    [(2, "sha1"), (3, "sha1"), (4, "sha1"), (4, "sha256"), (2, "sha256")],
)
def test_the_index_written_is_the_one_git_refresh_writes(tmp_path, version, object_format):
    env, repo = _repo(tmp_path, version=version, object_format=object_format)
    paths = ["a.bin", "dir/sub/c.bin", "z" * 200 + ".bin"]
    stats = {p: _touch(repo, p, OLD + 10) for p in paths}
    dirty = set(env.git("diff-files", "--name-only", cwd=repo).split())
    assert dirty >= set(paths)
    before = (repo / ".git" / "index").read_bytes()

    entries = {p: (blob_id((repo / p).read_bytes(), object_format), stats[p]) for p in paths}
    assert set_stat(repo / ".git", entries, object_format) == set(paths)
    ours = _debug(env, repo)
    # Plumbing that does not refresh trusts the stat data now.
    assert set(env.git("diff-files", "--name-only", cwd=repo).split()) == dirty - set(paths)

    (repo / ".git" / "index").write_bytes(before)
    env.git("update-index", "-q", "--refresh", cwd=repo)
    assert ours == _debug(env, repo)
    assert (repo / ".git" / "index").read_bytes()[4:8] == version.to_bytes(4, "big")


def test_an_entry_whose_blob_is_not_the_one_named_is_left_alone(tmp_path):
    env, repo = _repo(tmp_path)
    st = _touch(repo, "a.bin", OLD + 10)
    wrong = blob_id(b"something else")
    before = (repo / ".git" / "index").read_bytes()
    assert set_stat(repo / ".git", {"a.bin": (wrong, st), "absent.bin": (wrong, st)}) == set()
    assert (repo / ".git" / "index").read_bytes() == before
    assert "a.bin" in env.git("diff-files", "--name-only", cwd=repo).split()


def test_a_locked_index_is_not_touched(tmp_path):
    env, repo = _repo(tmp_path)
    st = _touch(repo, "a.bin", OLD + 10)
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"held by a running git")
    before = (repo / ".git" / "index").read_bytes()
    assert set_stat(repo / ".git", {"a.bin": (blob_id((repo / "a.bin").read_bytes()), st)}) == set()
    assert lock.read_bytes() == b"held by a running git"
    assert (repo / ".git" / "index").read_bytes() == before


def test_a_split_index_is_left_to_git(tmp_path):
    env, repo = _repo(tmp_path)
    env.git("update-index", "--split-index", cwd=repo)
    st = _touch(repo, "a.bin", OLD + 10)
    before = (repo / ".git" / "index").read_bytes()
    assert set_stat(repo / ".git", {"a.bin": (blob_id((repo / "a.bin").read_bytes()), st)}) == set()
    assert (repo / ".git" / "index").read_bytes() == before
    assert not (repo / ".git" / "index.lock").exists()


def test_a_corrupt_index_is_not_rewritten(tmp_path):
    env, repo = _repo(tmp_path)
    index = repo / ".git" / "index"
    damaged = bytearray(index.read_bytes())
    damaged[20] ^= 0xFF  # a stat byte of the first entry: the checksum no longer matches
    index.write_bytes(damaged)
    st = _touch(repo, "a.bin", OLD + 10)
    assert set_stat(repo / ".git", {"a.bin": (blob_id((repo / "a.bin").read_bytes()), st)}) == set()
    assert index.read_bytes() == damaged


def test_an_entry_racy_in_the_old_index_is_still_compared_by_content(tmp_path):
    """A same-size write to b.bin within the second the index was written leaves its stat
    data equal (Git compares whole seconds); Git re-reads such "racily clean" entries while
    the index is that old. The index written here is newer, so b.bin's size must be cleared
    or Git would take it for clean."""
    env, repo = _repo(tmp_path)
    env.git("config", "core.trustctime", "false", cwd=repo)  # only mtime and size can tell
    b = repo / "dir" / "b.bin"
    when = int(OLD) + 100  # whole seconds: the index and b.bin share one
    os.utime(b, (when, when))
    env.git("update-index", "-q", "--refresh", cwd=repo)  # b.bin recorded with mtime `when`
    b.write_bytes(b"\xff" * b.stat().st_size)  # same size, same inode, new content
    os.utime(b, (when, when))
    os.utime(repo / ".git" / "index", (when + 0.5, when + 0.5))  # the index's own second
    # Git compares b.bin's content only because the entry is racy: its stat data is equal
    # (diff-files does not write the index, which would clear the size itself).
    assert env.git("diff-files", "--name-only", "dir/b.bin", cwd=repo).split() == ["dir/b.bin"]
    assert f"size: {b.stat().st_size}\t" in _debug(env, repo).split("dir/b.bin\n")[1]

    st = _touch(repo, "a.bin", OLD + 10)
    assert set_stat(repo / ".git", {"a.bin": (blob_id((repo / "a.bin").read_bytes()), st)}) == {
        "a.bin"
    }
    assert " M dir/b.bin" in env.git("status", "--porcelain", cwd=repo).splitlines()


def test_the_copied_index_keeps_its_permissions(tmp_path):
    env, repo = _repo(tmp_path)
    index = repo / ".git" / "index"
    index.chmod(0o640)
    st = _touch(repo, "a.bin", OLD + 10)
    assert set_stat(repo / ".git", {"a.bin": (blob_id((repo / "a.bin").read_bytes()), st)})
    assert index.stat().st_mode & 0o777 == 0o640
    shutil.rmtree(repo)
