"""Endpoint discovery, as Git LFS does it."""

from __future__ import annotations

from pathlib import Path

import pytest

from git_theta.git.repo import Repo
from git_theta.transfer.endpoint import default_remote, endpoint_from_url, find_endpoint

BASE = Path("/work/repo")


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://host/org/model.git", "https://host/org/model.git/info/lfs"),
        ("https://host/org/model", "https://host/org/model.git/info/lfs"),
        ("https://host/org/model/", "https://host/org/model.git/info/lfs"),
        ("http://u:p@host:8080/m.git", "http://u:p@host:8080/m.git/info/lfs"),
        ("git@github.com:org/model.git", "https://github.com/org/model.git/info/lfs"),
        ("ssh://git@host:22/org/model", "https://host/org/model.git/info/lfs"),
        ("git://host/org/model.git", "https://host/org/model.git/info/lfs"),
        ("/srv/models/m.git", "file:///srv/models/m.git"),
        ("../shared/m.git", "file:///work/shared/m.git"),
        ("file:///srv/m%20x.git", "file:///srv/m%20x.git"),
    ],
)
def test_clone_urls(url, expected):
    assert endpoint_from_url("origin", url, base=BASE).url == expected


def test_an_lfs_url_is_taken_as_is():
    ep = endpoint_from_url("origin", "https://lfs.example/api/", base=BASE, lfs_url=True)
    assert ep.url == "https://lfs.example/api"


def test_description_hides_a_password():
    ep = endpoint_from_url("origin", "https://me:secret@host/m.git", base=BASE)
    assert ep.description == "origin (https://me:***@host/m.git/info/lfs)"
    token = endpoint_from_url("origin", "https://ghp_t0ken@host/m.git", base=BASE)
    assert token.description == "origin (https://***@host/m.git/info/lfs)"


@pytest.fixture
def repo(gitenv):
    path = gitenv.init_repo()
    gitenv.git("remote", "add", "origin", "https://host/org/model.git", cwd=path)
    gitenv.git("remote", "add", "mirror", "https://mirror/org/model", cwd=path)
    return gitenv, path


def test_order_of_precedence(repo):
    env, path = repo
    r = Repo(path)
    assert find_endpoint(r, "origin", "download").url == "https://host/org/model.git/info/lfs"
    assert find_endpoint(r, "nope", "download") is None

    # .lfsconfig in the work tree counts, below git config.
    (path / ".lfsconfig").write_text('[remote "origin"]\n\tlfsurl = https://cfg/lfs\n')
    assert find_endpoint(r, "origin", "download").url == "https://cfg/lfs"
    assert find_endpoint(r, "mirror", "download").url == "https://mirror/org/model.git/info/lfs"
    env.git("config", "remote.origin.lfsurl", "https://git-config/lfs", cwd=path)
    assert find_endpoint(r, "origin", "download").url == "https://git-config/lfs"

    env.git("config", "remote.origin.lfspushurl", "https://push/lfs", cwd=path)
    assert find_endpoint(r, "origin", "upload").url == "https://push/lfs"
    assert find_endpoint(r, "origin", "download").url == "https://git-config/lfs"

    env.git("config", "lfs.url", "https://everything/lfs", cwd=path)
    assert find_endpoint(r, "mirror", "download").url == "https://everything/lfs"
    env.git("config", "lfs.pushurl", "https://all-pushes/lfs", cwd=path)
    assert find_endpoint(r, "mirror", "upload").url == "https://all-pushes/lfs"


def test_lfsconfig_from_head_when_not_in_the_work_tree(repo):
    env, path = repo
    (path / ".lfsconfig").write_text("[lfs]\n\turl = https://committed/lfs\n\tfoo = bar\n")
    env.git("add", ".lfsconfig", cwd=path)
    env.git("commit", "-q", "-m", "lfs", cwd=path)
    (path / ".lfsconfig").unlink()
    assert find_endpoint(Repo(path), "origin", "download").url == "https://committed/lfs"


def test_unsafe_lfsconfig_keys_are_ignored(repo):
    env, path = repo
    (path / ".lfsconfig").write_text('[remote "origin"]\n\turl = https://evil/x.git\n')
    assert find_endpoint(Repo(path), "origin", "download").url == (
        "https://host/org/model.git/info/lfs"
    )


def test_default_remote(repo):
    env, path = repo
    r = Repo(path)
    assert default_remote(r) == "origin"
    env.git("config", "branch.main.remote", "mirror", cwd=path)
    assert default_remote(r) == "mirror"
    env.git("config", "lfs.remote", "origin", cwd=path)
    assert default_remote(r) == "origin"


def test_no_remote(gitenv):
    assert default_remote(Repo(gitenv.init_repo())) is None
