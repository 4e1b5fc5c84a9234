"""`git theta migrate import` on what real repositories hold besides branches: annotated tags
(made again on the rewritten commits, with their tagger and message) and paths with spaces,
quotes and non-ASCII characters (in the trees and in `.gitattributes` patterns, written as
Git LFS writes them or quoted)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv
from testing.lfs_history import commit_all, init_lfs_repo

pytestmark = pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is not installed")

SPACED = "my model v1.safetensors"
ACCENTED = 'dir é/w"q.safetensors'
TAG_MESSAGE = "Release one\n\nWith a body.\n"


def _write(repo, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for name in (SPACED, ACCENTED):
        params = {
            "embed.weight": ("F32", np.ones((16, 8), "<f4")),
            "layer.weight": ("F32", rng.standard_normal((8, 8)).astype("<f4")),
        }
        (repo / name).parent.mkdir(exist_ok=True)
        out[name] = write_safetensors(repo / name, params)
    return out


@pytest.fixture
def tagged(gitenv: GitEnv):
    repo = init_lfs_repo(gitenv, "lfsrepo", "my model*.safetensors")
    with (repo / ".gitattributes").open("a", encoding="utf-8") as f:
        f.write('"dir \\303\\251/*.safetensors" filter=lfs diff=lfs merge=lfs -text\n')
    versions = {}
    for seed in (1, 2):
        versions[seed] = _write(repo, seed)
        commit_all(gitenv, repo, f"v{seed}")
        if seed == 1:
            gitenv.git("tag", "-a", "v1", "-m", TAG_MESSAGE, cwd=repo)
            gitenv.git("tag", "light", cwd=repo)
    # Both files went to Git LFS: their blobs are pointers.
    for name in (SPACED, ACCENTED):
        assert gitenv.git("show", f"HEAD:{name}", cwd=repo).startswith("version https://git-lfs")
    return repo, versions


def _tag_fields(gitenv, repo):
    raw = gitenv.git("cat-file", "tag", "v1", cwd=repo)
    header, _, message = raw.partition("\n\n")
    lines = dict(line.split(" ", 1) for line in header.splitlines())
    return lines, message


def test_annotated_tags_and_unusual_paths_are_rewritten(gitenv, tagged):
    repo, versions = tagged
    before, before_message = _tag_fields(gitenv, repo)
    out = gitenv.theta(
        "migrate", "import", "--include", "my[[:space:]]model*.safetensors",
        "--include", "dir é/*.safetensors", "--everything", cwd=repo,
    )  # fmt: skip
    assert "Rewrote 2 commit(s) on refs/heads/main, refs/tags/light, refs/tags/v1:" in (
        out.stdout.decode()
    )
    assert "4 checkpoint version(s) converted" in out.stdout.decode()

    after, message = _tag_fields(gitenv, repo)
    assert gitenv.git("cat-file", "-t", "v1", cwd=repo).strip() == "tag"
    assert message == before_message == TAG_MESSAGE
    assert after["tagger"] == before["tagger"] and after["tag"] == "v1"
    assert after["object"] != before["object"]
    assert after["object"] == gitenv.git("rev-parse", "light", cwd=repo).strip()
    assert gitenv.git("rev-parse", "main~1", cwd=repo).strip() == after["object"]

    attributes = gitenv.git("show", "v1:.gitattributes", cwd=repo)
    assert attributes == (
        "my[[:space:]]model*.safetensors filter=theta merge=theta diff=theta -text\n"
        '"dir \\303\\251/*.safetensors" filter=theta merge=theta diff=theta -text\n'
    )
    for rev, seed in (("v1", 1), ("main", 2)):
        for name in (SPACED, ACCENTED):
            meta = md.decode(gitenv.git("show", f"{rev}:{name}", cwd=repo).encode())
            assert meta.format == "safetensors"
        gitenv.git("checkout", "-q", rev, cwd=repo)
        for name in (SPACED, ACCENTED):
            assert (repo / name).read_bytes() == versions[seed][name], (rev, name)
        assert gitenv.git("status", "--porcelain", cwd=repo) == ""


def test_a_tag_of_a_tag_is_refused_and_nothing_moves(gitenv, tagged):
    repo, _ = tagged
    gitenv.git("tag", "-a", "outer", "-m", "a tag of a tag", "v1", cwd=repo)
    refs = gitenv.git("for-each-ref", cwd=repo)
    proc = gitenv.theta(
        "migrate", "import", "--include", "my[[:space:]]model*.safetensors", "--everything",
        cwd=repo, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        "git-theta: error: refs/tags/outer: an annotated tag of a tag, not of a commit; "
        "migration rewrites tags of commits only\n"
    )
    assert gitenv.git("for-each-ref", cwd=repo) == refs
