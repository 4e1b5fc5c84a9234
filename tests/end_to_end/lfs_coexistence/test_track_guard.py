"""`git theta track` never takes a path from Git LFS (or another driver) unasked, and adds
nothing that an existing git-theta pattern covers already."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from testing.gitenv import GitEnv

LFS_LINE = "*.bin filter=lfs diff=lfs merge=lfs -text\n"


@pytest.fixture
def repo(gitenv: GitEnv) -> Path:
    """git-theta and Git LFS installed; `*.bin` on LFS, `*.safetensors` on git-theta,
    `*.txt` with git's union merge; a few files, some committed."""
    path = gitenv.init_repo()
    gitenv.run(["git", "lfs", "install"], cwd=path)
    gitenv.run(["git", "lfs", "track", "*.bin"], cwd=path)
    gitenv.theta("track", "*.safetensors", cwd=path)
    with (path / ".gitattributes").open("a") as f:
        f.write("*.txt merge=union\n")
    (path / "weights").mkdir()
    (path / "weights" / "model.bin").write_bytes(b"\0" * 64)
    (path / "notes.txt").write_text("notes\n")
    # Older than the index, so git trusts their stat data rather than cleaning them again
    # when .gitattributes changes (a 64-byte model.bin is no checkpoint git-theta can clean).
    for name in ("weights/model.bin", "notes.txt"):
        os.utime(path / name, (time.time() - 60,) * 2)
    gitenv.git("add", ".", cwd=path)
    gitenv.git("commit", "-q", "-m", "mixed", cwd=path)
    return path


def _refused(env: GitEnv, repo: Path, *args: str) -> str:
    attributes = (repo / ".gitattributes").read_bytes()
    proc = env.theta("track", *args, cwd=repo, check=False)
    assert proc.returncode == 1, proc
    assert proc.stdout == b""
    assert (repo / ".gitattributes").read_bytes() == attributes  # nothing written
    assert env.git("status", "--porcelain", cwd=repo) == ""  # nor staged
    return proc.stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("*.bin",),
            '"*.bin" is already tracked with filter=lfs; run '
            "`git theta track --force '*.bin'` to move it to git-theta",
        ),
        (
            ("weights/model.bin",),
            '"weights/model.bin" is already tracked with filter=lfs; run '
            "`git theta track --force weights/model.bin` to move it to git-theta",
        ),
        (
            ("weights/*",),
            '"weights/*" matches weights/model.bin, which has filter=lfs; run '
            "`git theta track --force 'weights/*'` to move it to git-theta",
        ),
        (
            ("notes.txt",),
            '"notes.txt" is already tracked with merge=union; run '
            "`git theta track --force notes.txt` to move it to git-theta",
        ),
        # All or nothing: the harmless pattern is not added either.
        (
            ("*.ckpt", "*.bin"),
            '"*.bin" is already tracked with filter=lfs; run '
            "`git theta track --force '*.bin'` to move it to git-theta",
        ),
    ],
    ids=["lfs-pattern", "lfs-path", "glob-over-lfs-file", "union-merge", "all-or-nothing"],
)
def test_track_refuses_what_another_driver_has(gitenv, repo, args, message):
    assert _refused(gitenv, repo, *args) == f"git-theta: error: {message}\n"


def test_track_force_takes_the_pattern_over_from_git_lfs(gitenv, repo):
    out = gitenv.theta("track", "--force", "*.bin", cwd=repo).stdout.decode()
    assert out.startswith(f'Replaced {LFS_LINE.strip()!r} in .gitattributes\nTracking "*.bin"\n')
    text = (repo / ".gitattributes").read_text()
    assert LFS_LINE not in text
    assert "*.bin filter=theta merge=theta diff=theta -text\n" in text
    assert "*.txt merge=union\n" in text  # other lines kept
    for attr in ("filter", "merge", "diff"):
        said = gitenv.git("check-attr", attr, "--", "weights/model.bin", cwd=repo)
        assert said == f"weights/model.bin: {attr}: theta\n"
    assert ".gitattributes" in gitenv.git("diff", "--cached", "--name-only", cwd=repo)
    # Git LFS now lists it among the patterns it excludes, not those it tracks.
    listed = gitenv.run(["git", "lfs", "track"], cwd=repo).stdout.decode()
    tracked, _, excluded = listed.partition("Listing excluded patterns")
    assert "*.bin" not in tracked and "*.bin (.gitattributes)" in excluded


def test_track_force_warns_when_a_more_specific_file_still_wins(gitenv, repo):
    (repo / "weights" / ".gitattributes").write_text("*.pt filter=lfs diff=lfs merge=lfs -text\n")
    out = gitenv.theta("track", "--force", "weights/*.pt", cwd=repo).stdout.decode()
    assert (
        'warning: "weights/*.pt" is already tracked with filter=lfs still, set by a more '
        "specific attributes file (a subdirectory's .gitattributes or .git/info/attributes); "
        "change it there\n"
    ) in out


def test_track_adds_nothing_when_a_theta_pattern_covers_the_path(gitenv, repo):
    before = (repo / ".gitattributes").read_bytes()
    for pattern in ("sub/model.safetensors", "/model.safetensors", "models/*.safetensors"):
        out = gitenv.theta("track", pattern, cwd=repo).stdout.decode()
        assert out.startswith(
            f'"{pattern}" is covered by git-theta already (by "*.safetensors"); nothing added\n'
        )
    assert (repo / ".gitattributes").read_bytes() == before
    out = gitenv.theta("track", "*.safetensors", cwd=repo).stdout.decode()
    assert out.startswith('Already tracking "*.safetensors"\n')
    # A pattern nothing covers is added as before.
    out = gitenv.theta("track", "*.ckpt", cwd=repo).stdout.decode()
    assert out.startswith('Tracking "*.ckpt"\n')
