"""`git theta migrate import`: a Git LFS repository with 5 commits on 2 branches rewritten so
every version is git-theta metadata, checking out byte-identical to the LFS version."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from git_theta import metadata as md

pytestmark = pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is not installed")


def test_every_version_checks_out_byte_identical_after_the_rewrite(gitenv, lfs_repo):
    repo, versions = lfs_repo
    out = gitenv.theta("migrate", "import", "--include", "*.safetensors", "--everything", cwd=repo)
    text = out.stdout.decode()
    assert (
        "Rewrote 5 commit(s) on refs/heads/main, refs/heads/side: 5 checkpoint version(s)" in text
    )
    new_commits = gitenv.git("rev-list", "--all", cwd=repo).split()
    assert len(new_commits) == 5 and not set(new_commits) & set(versions)
    expected = list(versions.values())
    for commit in new_commits:
        attrs = gitenv.git("show", f"{commit}:.gitattributes", cwd=repo)
        assert attrs == "*.safetensors filter=theta merge=theta diff=theta -text\n"
        meta = md.decode(gitenv.git("show", f"{commit}:model.safetensors", cwd=repo).encode())
        assert meta.format == "safetensors"
        gitenv.git("checkout", "-q", commit, cwd=repo)
        assert (repo / "model.safetensors").read_bytes() in expected
        assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    # The same tensors across versions are stored once: less than the five LFS copies.
    theta = sum(p.stat().st_size for p in (repo / ".git/theta/objects").rglob("*") if p.is_file())
    assert theta < sum(len(v) for v in versions.values())


def test_objects_only_on_the_lfs_server_are_downloaded_then_converted(gitenv, lfs_repo, giftless):
    repo, versions = lfs_repo
    bare = gitenv.root / "origin.git"
    gitenv.git("init", "-q", "--bare", str(bare), cwd=gitenv.root)
    gitenv.git("remote", "add", "origin", str(bare), cwd=repo)
    gitenv.git(
        "config", "-f", ".lfsconfig", "lfs.url", giftless.lfs_url("org/lfs-history"), cwd=repo
    )
    gitenv.git("add", ".lfsconfig", cwd=repo)
    gitenv.git("commit", "-q", "-m", "lfs server", cwd=repo)
    gitenv.git("push", "-q", "origin", "main", "side", cwd=repo)
    assert {hashlib.sha256(v).hexdigest() for v in versions.values()} <= giftless.stored(
        "org/lfs-history"
    )
    clone = gitenv.root / "clone"
    gitenv.run(
        ["git", "clone", "-q", str(bare), str(clone)],
        cwd=gitenv.root,
        env={"GIT_LFS_SKIP_SMUDGE": "1"},
    )
    gitenv.git("branch", "-q", "side", "origin/side", cwd=clone)
    assert not (clone / ".git/lfs/objects").exists()
    info = gitenv.theta("migrate", "info", "--include", "*.safetensors", "--everything", cwd=clone)
    assert info.stdout.decode().count("not held locally (`migrate import` downloads it)") == 5

    out = gitenv.theta("migrate", "import", "--include", "*.safetensors", "--everything", cwd=clone)
    text = out.stdout.decode()
    lfs_bytes = sum(len(v) for v in versions.values())
    assert f"Downloaded 5 Git LFS object(s), {lfs_bytes} bytes." in text
    assert "Rewrote 6 commit(s) on refs/heads/main, refs/heads/side: 5 checkpoint" in text
    # origin/* still name the LFS history: only the rewritten branches are checked.
    rewritten = gitenv.git("rev-list", "main", "side", "--", "model.safetensors", cwd=clone)
    assert len(rewritten.split()) == 5
    for commit in rewritten.split():
        gitenv.git("checkout", "-q", commit, cwd=clone)
        assert (clone / "model.safetensors").read_bytes() in versions.values()
        assert gitenv.git("status", "--porcelain", cwd=clone) == ""


def test_an_object_the_lfs_server_lacks_names_commit_path_and_object(gitenv, lfs_repo, giftless):
    repo, versions = lfs_repo
    bare = gitenv.root / "origin.git"
    gitenv.git("clone", "-q", "--bare", str(repo), str(bare), cwd=gitenv.root)
    clone = gitenv.root / "clone"
    gitenv.git("clone", "-q", str(bare), str(clone), cwd=gitenv.root)
    # An empty LFS repository on the server: every object is missing there.
    gitenv.git("config", "lfs.url", giftless.lfs_url("org/lfs-empty"), cwd=clone)
    refs = gitenv.git("for-each-ref", cwd=clone)
    proc = gitenv.theta("migrate", "import", "--include", "*.safetensors", cwd=clone, check=False)
    assert proc.returncode == 1, proc.stdout
    (line,) = proc.stderr.decode().strip().splitlines()
    head = gitenv.git("rev-list", "--max-parents=0", "HEAD", cwd=clone).strip()
    oid = hashlib.sha256(versions[head]).hexdigest()
    assert line.startswith(
        f"git-theta: error: commit {head}: model.safetensors: Git LFS object {oid} is not in "
    ), line
    assert (
        f"could not be downloaded: download from origin ({giftless.lfs_url('org/lfs-empty')})"
        in line
    )
    assert gitenv.git("for-each-ref", cwd=clone) == refs
    assert not [p for p in (clone / ".git/lfs").rglob("*") if p.is_file()]


def test_a_missing_lfs_object_names_commit_path_and_object_and_leaves_refs(gitenv, lfs_repo):
    repo, versions = lfs_repo
    refs = gitenv.git("for-each-ref", cwd=repo)
    # An object only the other branch needs (the checked-out one git-lfs would store again).
    side = gitenv.git("rev-parse", "side", cwd=repo).strip()
    oid = hashlib.sha256(versions[side]).hexdigest()
    victim = repo / ".git/lfs/objects" / oid[:2] / oid[2:4] / oid
    victim.unlink()
    proc = gitenv.theta(
        "migrate", "import", "--include", "*.safetensors", "--everything", cwd=repo, check=False
    )
    assert proc.returncode != 0, proc.stdout
    (line,) = proc.stderr.decode().strip().splitlines()
    assert f": model.safetensors: Git LFS object {victim.name} is not in " in line
    assert line.startswith("git-theta: error: commit ")
    assert gitenv.git("for-each-ref", cwd=repo) == refs


def test_info_reports_versions_and_distinct_tensor_bytes_and_changes_nothing(gitenv, lfs_repo):
    repo, versions = lfs_repo
    refs = gitenv.git("for-each-ref", cwd=repo)
    out = gitenv.theta("migrate", "info", "--include", "*.safetensors", "--everything", cwd=repo)
    lines = out.stdout.decode().splitlines()
    lfs_bytes = sum(len(v) for v in versions.values())
    assert lines[0] == (
        "5 commit(s) on refs/heads/main, refs/heads/side: 5 Git LFS version(s) of "
        f"*.safetensors, {lfs_bytes} bytes in Git LFS."
    )
    # embed.weight is the same in every version: counted once; each layer version once.
    distinct = 64 * 16 * 4 + 5 * 32 * 16 * 4
    assert lines[1].startswith(f"Distinct tensors across them: {distinct} bytes")
    assert gitenv.git("for-each-ref", cwd=repo) == refs


def test_a_pattern_that_is_not_an_lfs_line_is_refused(gitenv, lfs_repo):
    repo, _ = lfs_repo
    proc = gitenv.theta(
        "migrate", "import", "--include", "model.safetensors", cwd=repo, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        "git-theta: error: 'model.safetensors': no `model.safetensors filter=lfs` line in "
        ".gitattributes at HEAD; --include takes a pattern exactly as .gitattributes writes it\n"
    )
