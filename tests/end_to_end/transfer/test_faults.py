"""Faults between git-theta and a real LFS server: one clear line naming the remote, the objects
and their parameters; a non-zero exit; nothing half-written; a later retry succeeds."""

from __future__ import annotations

import pytest

from testing.fault_proxy import Fault
from testing.gitenv import store_objects
from testing.lfs_server import LfsServer, free_port


def _theta_lines(proc) -> list[str]:
    return [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("git-theta:")]


def _no_temp_files(repo) -> bool:
    tmp = repo / ".git" / "theta" / "tmp"
    return not tmp.exists() or not any(tmp.iterdir())


@pytest.fixture
def via_proxy(scratch, origin, proxy):
    """A pushed v1, with the repository talking to giftless through the proxy; fast retries."""
    origin.connect(scratch.repo, lfs_url=origin.lfs_url.replace(origin.server.url, proxy.url))
    scratch.git("config", "lfs.transfer.maxretries", "1")
    scratch.git("config", "lfs.transfer.maxretrydelay", "0")
    return scratch


def _push_fails(scratch, origin) -> str:
    refs_before = origin.refs()
    proc = scratch.env.run(["git", "push", "-q", "origin", "main"], cwd=scratch.repo, check=False)
    assert proc.returncode != 0
    assert b"Traceback" not in proc.stderr
    lines = _theta_lines(proc)
    assert len(lines) == 1, proc.stderr.decode()
    assert origin.refs() == refs_before  # the ref never points at commits missing objects
    return lines[0]


def test_server_down(scratch, origin):
    dead = f"http://127.0.0.1:{free_port()}/org/m.git/info/lfs"
    origin.connect(scratch.repo, lfs_url=dead)
    scratch.git("config", "lfs.transfer.maxretries", "1")
    scratch.git("config", "lfs.transfer.maxretrydelay", "0")
    scratch.commit("v1")
    line = _push_fails(scratch, origin)
    assert line.startswith(
        f"git-theta: error: upload to origin ({dead}) failed for 8 of 8 object(s): "
    )
    assert "cannot connect" in line and "(2 attempts)" in line
    assert "(model.safetensors: " in line


def test_500s_are_retried_then_a_persistent_500_fails_the_push(via_proxy, origin, proxy):
    scratch = via_proxy
    scratch.git("config", "lfs.transfer.maxretries", "2")
    scratch.commit("v1")
    proxy.faults = [Fault("status", "/objects/batch", status=503, times=2)]
    scratch.git("push", "-q", "origin", "main")  # two 503s, then the third attempt goes through
    assert origin.stored() == store_objects(scratch.repo)

    scratch.commit("v2", scratch.edited("norm.scale"))
    proxy.faults = [Fault("status", "/objects/storage/", method="PUT", status=500)]
    line = _push_fails(scratch, origin)
    assert "upload to origin (http://127.0.0.1:" in line
    assert "failed for 1 of " in line
    assert "HTTP 500 Internal Server Error: injected fault (3 attempts)" in line
    assert "(model.safetensors: norm.scale)" in line

    proxy.faults = []
    scratch.git("push", "-q", "origin", "main")
    assert origin.stored() == store_objects(scratch.repo)


DOWNLOAD_FAULTS = [
    (Fault("status", "/objects/storage/", method="GET", status=404), "download refused: HTTP 404"),
    (Fault("corrupt", "/objects/storage/", method="GET"), "received bytes do not match the oid"),
    (Fault("drop", "/objects/storage/", method="GET"), "the connection was dropped (2 attempts)"),
]


def test_download_faults_leave_nothing_and_a_retry_succeeds(via_proxy, origin, proxy):
    scratch = via_proxy
    v1 = scratch.commit("v1")
    scratch.git("push", "-q", "origin", "main")
    clone = origin.clone("clone")
    scratch.env.git("config", "lfs.transfer.maxretries", "1", cwd=clone)
    scratch.env.git("config", "lfs.transfer.maxretrydelay", "0", cwd=clone)
    for fault, reason in DOWNLOAD_FAULTS:
        # Empty the clone's store, then fetch again through the faulty proxy.
        for path in [p for p in (clone / ".git" / "theta" / "objects").rglob("*") if p.is_file()]:
            path.unlink()
        proxy.faults = [fault]
        proc = scratch.env.theta("fetch", cwd=clone, check=False)
        assert proc.returncode == 1
        lines = _theta_lines(proc)
        assert len(lines) == 1 and b"Traceback" not in proc.stderr
        assert lines[0].startswith("git-theta: error: download from origin (http://127.0.0.1:")
        assert f"failed for 8 of 8 object(s): {reason}" in lines[0]
        assert "(model.safetensors: " in lines[0]
        assert store_objects(clone) == set()
        assert _no_temp_files(clone)

        proxy.faults = []
        scratch.env.theta("fetch", cwd=clone)
        assert store_objects(clone) == origin.stored()
    (clone / "model.safetensors").unlink()
    scratch.env.git("checkout", "--", "model.safetensors", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == v1


def test_a_dropped_connection_is_retried(via_proxy, origin, proxy):
    scratch = via_proxy
    v1 = scratch.commit("v1")
    scratch.git("push", "-q", "origin", "main")
    proxy.faults = [Fault("drop", "/objects/storage/", method="GET", times=2)]
    clone = origin.clone("clone")
    assert (clone / "model.safetensors").read_bytes() == v1


def test_checkout_names_the_parameters_and_recovers(via_proxy, origin, proxy):
    scratch = via_proxy
    scratch.commit("v1")
    scratch.git("push", "-q", "-u", "origin", "main")
    clone = origin.clone("clone")
    scratch.env.git("config", "lfs.transfer.maxretries", "0", cwd=clone)
    v2 = scratch.commit("v2", scratch.edited("embed.weight"))
    scratch.git("push", "-q")
    scratch.env.git("fetch", "-q", cwd=clone)

    proxy.faults = [Fault("status", "/objects/storage/", method="GET", status=404)]
    proc = scratch.env.run(
        ["git", "merge", "-q", "--ff-only", "origin/main"], cwd=clone, check=False
    )
    assert proc.returncode != 0
    line = _theta_lines(proc)[0]
    assert line.startswith("git-theta: smudge failed: model.safetensors: 1 object(s) missing from ")
    assert "for parameter(s) embed.weight; download from origin (http://127.0.0.1:" in line
    assert "HTTP 404" in line and line.endswith("run `git theta checkout` to retry")
    assert _no_temp_files(clone)

    proxy.faults = []
    scratch.env.git("merge", "-q", "--ff-only", "origin/main", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == v2


def test_wrong_credentials_are_rejected_and_right_ones_work(scratch, tmp_path):
    with LfsServer(tmp_path / "auth-storage", user="alice", password="s3cret") as server:
        env = scratch.env
        bare = env.root / "auth-origin.git"
        env.git("init", "-q", "--bare", str(bare), cwd=env.root)
        scratch.git("remote", "add", "origin", str(bare))
        scratch.git("config", "lfs.url", server.lfs_url())
        # One retry: giftless's local storage races creating a repository's directory when the
        # first uploads arrive together (`mkdir` after `is_dir()`), and answers 500 for the loser.
        scratch.git("config", "lfs.transfer.maxretries", "1")
        scratch.git("config", "lfs.transfer.maxretrydelay", "0")
        # A real credential helper: git's own `store`, holding a wrong password.
        store = env.home / ".git-credentials"
        host = f"127.0.0.1:{server.port}"
        store.write_text(f"http://alice:wrong@{host}\n")
        scratch.git("config", "credential.helper", f"store --file={store}")
        scratch.commit("v1")

        proc = env.run(["git", "push", "-q", "origin", "main"], cwd=scratch.repo, check=False)
        assert proc.returncode != 0
        lines = _theta_lines(proc)
        assert len(lines) == 1, proc.stderr.decode()
        assert lines[0].startswith(
            f"git-theta: error: upload to origin ({server.lfs_url()}) failed"
        )
        assert "the server refused the credentials" in lines[0]
        assert "(model.safetensors: " in lines[0]
        assert env.git("for-each-ref", cwd=bare) == ""
        assert store.read_text() == ""  # `git credential reject` removed the wrong entry

        store.write_text(f"http://alice:s3cret@{host}\n")
        proc = env.run(["git", "push", "-q", "origin", "main"], cwd=scratch.repo, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert server.stored() == store_objects(scratch.repo)

        store.write_text("")  # with no credentials at all, and no terminal to ask on
        scratch.commit("v2", scratch.edited("norm.scale"))
        proc = env.run(["git", "push", "-q", "origin", "main"], cwd=scratch.repo, check=False)
        assert proc.returncode != 0
        assert "`git credential fill` gave none" in _theta_lines(proc)[0], proc.stderr.decode()
