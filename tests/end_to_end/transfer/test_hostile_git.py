"""Real git against a hostile LFS server: `git theta fetch`, `git clone` and `git push` through a
server that lies about sizes, sends forever, trickles, loops redirects, hands out file:// hrefs
or other objects, or refuses. Each ends in one `git-theta:` line naming the remote, the reason
and the objects; in bounded time (the bounds are set small in git config); with the store's tmp
dir empty and no object stored; with no internal error (no crash log); and a permanent error is
asked once per object, never retried."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import GitEnv, store_objects
from testing.hostile_lfs import HostileLfs, Reply

SHAPES = {"w": ("F32", (64, 64)), "b": ("F32", (64,))}
# Small bounds so that a stall costs half a second; one retry without back-off.
FAST_CONFIG = {
    "theta.transfer.rateWindow": "0.5",
    "theta.transfer.minRate": "4k",
    "theta.transfer.timeout": "5",
    "lfs.transfer.maxretries": "1",
    "lfs.transfer.maxretrydelay": "0",
}
# Seconds any case may take, git-theta's start-up included, on a busy machine.
BOUND_SECONDS = 10.0


class Published:
    """A checkpoint pushed to the hostile server (honest at the time) and a clone of it."""

    def __init__(self, root: Path, server: HostileLfs) -> None:
        self.env = env = GitEnv(root)
        self.server = server
        self.repo = env.init_repo(track=("*.safetensors",))
        self.data = write_safetensors(self.repo / "model.safetensors", random_params(SHAPES))
        self.bare = root / "origin.git"
        env.git("init", "-q", "--bare", str(self.bare), cwd=root)
        env.git("remote", "add", "origin", str(self.bare), cwd=self.repo)
        env.git("config", "-f", ".lfsconfig", "lfs.url", server.lfs_url(), cwd=self.repo)
        env.git("add", ".lfsconfig", "model.safetensors", cwd=self.repo)
        env.git("commit", "-q", "-m", "v1", cwd=self.repo)
        env.git("push", "-q", "origin", "main", cwd=self.repo)
        self.objects = store_objects(self.repo)
        assert set(server.objects) == self.objects
        self.clone = root / "clone"
        env.git("clone", "-q", str(self.bare), str(self.clone), cwd=root)
        for key, value in FAST_CONFIG.items():
            env.git("config", key, value, cwd=self.clone)
        self.crash_dir = root / "crash-tmp"
        self.crash_dir.mkdir()

    def empty_clone_store(self) -> None:
        for path in [p for p in (self.clone / ".git" / "theta").rglob("*") if p.is_file()]:
            path.unlink()

    def run(self, args: list[str], cwd: Path, env: dict[str, str] | None = None):
        """Run with TMPDIR pointing at a directory of our own, where a crash log would land."""
        start = time.monotonic()
        env = {"TMPDIR": str(self.crash_dir), **(env or {})}
        proc = self.env.run(args, cwd=cwd, check=False, env=env)
        return proc, time.monotonic() - start

    def theta_lines(self, proc) -> list[str]:
        stderr = proc.stderr.decode()
        assert "Traceback" not in stderr and "internal error" not in stderr, stderr
        assert list(self.crash_dir.iterdir()) == []
        return [ln for ln in stderr.splitlines() if ln.startswith("git-theta:")]


def _tmp_files(repo: Path) -> list[Path]:
    tmp = repo / ".git" / "theta" / "tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    with HostileLfs() as server:
        yield Published(tmp_path_factory.mktemp("hostile-git"), server)


@pytest.fixture
def hostile(published):
    published.server.reset()
    published.empty_clone_store()
    yield published
    published.server.reset()


# kind, reply, reason in the line, requests of that kind per object (or per batch), and how
# many objects fail (None: all; a falsified entry of a batch response fails only its object).
FETCH_CASES = {
    "Content-Length 10^12": (
        "download",
        Reply(length="huge"),
        "the server announced 1000000000000 bytes for an object of ",
        1,
        None,
    ),
    "endless body": (
        "download",
        Reply(body="endless", length="absent"),
        "the download runs past the ",
        1,
        None,
    ),
    "trickle": ("download", Reply(trickle=0.05), "too slow: ", 2, None),
    "no answer": (
        "download",
        Reply(silent=True),
        "too slow: nothing moved for 0.5 s (below theta.transfer.minRate = 4.0 KiB/s) (2 attempts)",
        2,
        None,
    ),
    "redirect loop": (
        "download",
        Reply(redirect="loop"),
        "redirect loop: http://127.0.0.1:",
        1,
        None,
    ),
    "file:// href": (
        "batch",
        Reply(batch="file_href"),
        "the server's batch response is malformed: its download href has unsupported scheme "
        "'file' (only http and https)",
        1,
        1,
    ),
    "oid not asked for": ("batch", Reply(batch="wrong_oid"), ", not one asked for", 1, None),
    "oid that is a path": (
        "batch",
        Reply(batch="bad_oid"),
        "names an invalid oid '../../",
        1,
        None,
    ),
    "oversized JSON": (
        "batch",
        Reply(batch="oversized"),
        "bytes exceeds the 4194304 allowed",
        1,
        None,
    ),
    "404": ("download", Reply(status=404), "download refused: HTTP 404 Not Found", 1, None),
    "403": ("download", Reply(status=403), "download refused: HTTP 403 Forbidden", 1, None),
    "429": ("download", Reply(status=429, retry_after="0"), "HTTP 429 Too Many Requests", 2, None),
    "500": ("download", Reply(status=500), "HTTP 500 Internal Server Error", 2, None),
}


@pytest.mark.parametrize("case", FETCH_CASES, ids=list(FETCH_CASES))
def test_theta_fetch_from_a_hostile_server(case, hostile):
    kind, reply, reason, per_object, failing = FETCH_CASES[case]
    hostile.server.always(kind, reply)
    proc, elapsed = hostile.run(["git-theta", "fetch"], hostile.clone)
    assert proc.returncode == 1
    lines = hostile.theta_lines(proc)
    assert len(lines) == 1, proc.stderr.decode()
    n = len(hostile.objects)
    failed = failing or n
    assert lines[0].startswith(
        f"git-theta: error: download from origin ({hostile.server.lfs_url()}) "
        f"failed for {failed} of {n} object(s): "
    )
    assert reason in lines[0]
    assert "(model.safetensors: " in lines[0]
    fetched = store_objects(hostile.clone)
    assert len(fetched) == n - failed and fetched <= hostile.objects
    assert _tmp_files(hostile.clone) == []
    assert elapsed < BOUND_SECONDS
    expected = per_object if kind == "batch" else per_object * n
    assert hostile.server.count(kind) == expected, lines[0]


def test_clone_through_a_trickling_server_fails_in_bounded_time(hostile):
    hostile.server.always("download", Reply(trickle=0.05))
    config = [arg for key, value in FAST_CONFIG.items() for arg in ("-c", f"{key}={value}")]
    target = hostile.env.root / "trickled"
    proc, elapsed = hostile.run(
        ["git", *config, "clone", "-q", str(hostile.bare), str(target)], hostile.env.root
    )
    assert proc.returncode != 0 and elapsed < BOUND_SECONDS
    lines = hostile.theta_lines(proc)
    assert len(lines) == 1, proc.stderr.decode()
    assert lines[0].startswith("git-theta: smudge failed: model.safetensors: ")
    assert "too slow: " in lines[0] and "below theta.transfer.minRate = 4.0 KiB/s" in lines[0]
    assert f"download from origin ({hostile.server.lfs_url()}) failed" in lines[0]
    assert store_objects(target) == set() and _tmp_files(target) == []

    hostile.server.reset()  # what git suggests then works once the server behaves
    hostile.env.git("restore", "--source=HEAD", ":/", cwd=target)
    assert (target / "model.safetensors").read_bytes() == hostile.data


@pytest.mark.parametrize(
    ("reply", "reason", "requests"),
    [
        (Reply(status=403), "upload refused: HTTP 403 Forbidden", 1),
        (Reply(redirect="file"), "redirects to a URL that has unsupported scheme 'file'", 1),
        (Reply(silent=True), "too slow: nothing moved for 0.5 s", 2),
    ],
    ids=["403", "redirect to file://", "no answer"],
)
def test_push_to_a_hostile_server(hostile, reply, reason, requests):
    env, repo = hostile.env, hostile.repo
    for key, value in FAST_CONFIG.items():
        env.git("config", key, value, cwd=repo)
    params = random_params(SHAPES, seed=len(env.git("log", "--oneline", cwd=repo).splitlines()))
    write_safetensors(repo / "model.safetensors", params)
    env.git("commit", "-q", "-am", "next", cwd=repo)
    refs_before = env.git("for-each-ref", cwd=hostile.bare)
    hostile.server.always("upload", reply)
    proc, elapsed = hostile.run(["git", "push", "-q", "origin", "main"], repo)
    assert proc.returncode != 0 and elapsed < BOUND_SECONDS
    lines = hostile.theta_lines(proc)
    assert len(lines) == 1, proc.stderr.decode()
    assert lines[0].startswith(f"git-theta: error: upload to origin ({hostile.server.lfs_url()})")
    assert reason in lines[0] and "(model.safetensors: " in lines[0]
    new = hostile.server.count("upload") // requests
    assert new >= 1 and hostile.server.count("upload") == new * requests
    assert env.git("for-each-ref", cwd=hostile.bare) == refs_before


def test_credentials_never_reach_the_terminal(hostile):
    password = "pa55-w0rd-xyz"
    token = base64.b64encode(f"user:{password}".encode()).decode()
    with HostileLfs(password=password) as guarded:
        guarded.objects.update(hostile.server.objects)
        url = guarded.lfs_url(userinfo=f"user:{password}")
        # Every download answered 400 with our Authorization header echoed in the message.
        guarded.always("download", Reply(status=400, batch="echo_auth"))
        config = [arg for k, v in FAST_CONFIG.items() for arg in ("-c", f"{k}={v}")]
        target = hostile.env.root / "guarded-clone"
        proc, _ = hostile.run(
            ["git", *config, "-c", f"lfs.url={url}", "clone", str(hostile.bare), str(target)],
            hostile.env.root,
            env={"GIT_THETA_TRACE": "1", "GIT_TRACE": "1"},
        )
        assert proc.returncode != 0
        stderr = proc.stderr.decode()
        lines = hostile.theta_lines(proc)
        assert len(lines) == 1, stderr
        assert (
            "download refused: HTTP 400 Bad Request: hostile server says no (you sent Basic ***)"
            in lines[0]
        )
        assert f"http://user:***@127.0.0.1:{guarded.port}/" in lines[0]
        assert guarded.authorizations("batch") == [f"Basic {token}"]  # it was sent, and worked
        assert password not in stderr and token not in stderr
