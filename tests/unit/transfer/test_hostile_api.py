"""The HTTP adapter against a hostile LFS server on 127.0.0.1 (real sockets, no git needed):
every misbehaviour ends in one line naming the server, bounded time, an empty tmp dir, no
corrupt object in the store, and no retry of a permanent error."""

from __future__ import annotations

import base64
import hashlib
import threading
import time

import httpx
import pytest

from git_theta.errors import CredentialsError, TransferError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.transfer.base import ObjectFailed
from git_theta.transfer.batch import HttpTransport
from git_theta.transfer.endpoint import Endpoint
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.pace import Pace
from git_theta.transfer.queue import run_transfer
from git_theta.transfer.session import Session
from testing.gitenv import GitEnv
from testing.hostile_lfs import HostileLfs, Reply

# Fast bounds: a stall is noticed after 0.3 s; one retry, without back-off.
FAST = TransferOptions(
    concurrency=2, max_retries=1, max_retry_delay=0.0, timeout=3.0, min_rate=4096, rate_window=0.3
)
DATA = bytes(range(256)) * 64
REF = ObjectRef(hashlib.sha256(DATA).hexdigest(), len(DATA))
# Any case must end well within this (two attempts of a 0.3 s window, and slack for a busy box).
BOUND_SECONDS = 3.0


@pytest.fixture(scope="module")
def server():
    with HostileLfs() as s:
        s.objects[REF.oid] = DATA
        yield s


@pytest.fixture
def hostile(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository for `git credential` (never asked here: credentials come in the URL)."""
    env = GitEnv(tmp_path_factory.mktemp("hostile-api"), install=False)
    return Repo(env.init_repo())


def _fetch(repo, server, store, *, url=None, options=FAST):
    transport = HttpTransport(Endpoint("origin", url or server.lfs_url()), repo, options)
    try:
        return run_transfer(transport, "download", [REF], store, concurrency=2)
    finally:
        transport.close()


def _tmp_files(store: ObjectStore) -> list:
    return list(store.tmp_dir.iterdir()) if store.tmp_dir.exists() else []


def _fails(repo, server, store, **kw) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(TransferError) as info:
        _fetch(repo, server, store, **kw)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith(f"download from origin ({server.lfs_url()}) failed for 1 of 1 ")
    assert message.endswith(REF.oid[:12])
    assert not store.has(REF) and _tmp_files(store) == []
    assert elapsed < BOUND_SECONDS, (elapsed, message)
    return message, elapsed


# (kind, reply, what the line says, requests of that kind: 1 = not retried, 2 = retried once)
DOWNLOAD_CASES = {
    "huge Content-Length": (
        "download",
        Reply(length="huge"),
        f"the server announced 1000000000000 bytes for an object of {REF.size}; nothing was read",
        1,
    ),
    "endless body": (
        "download",
        Reply(body="endless", length="absent"),
        f"the download runs past the {REF.size} bytes expected; stopped",
        1,
    ),
    "body longer than promised": (
        "download",
        Reply(body="long", length="absent"),
        f"the download runs past the {REF.size} bytes expected; stopped",
        1,
    ),
    "trickle": (
        "download",
        Reply(trickle=0.05),
        "too slow: ",
        2,
    ),
    "stall": (
        "download",
        Reply(stall=True),
        "too slow: nothing moved for 0.3 s (below theta.transfer.minRate = 4.0 KiB/s) (2 attempts)",
        2,
    ),
    "no answer": (
        "download",
        Reply(silent=True),
        "too slow: nothing moved for 0.3 s (below theta.transfer.minRate = 4.0 KiB/s) (2 attempts)",
        2,
    ),
    "redirect loop": (
        "download",
        Reply(redirect="loop"),
        "redirect loop: http://127.0.0.1:{port} redirects back to a URL it came from",
        1,
    ),
    "redirect chain too long": (
        "download",
        Reply(redirect="chain", hops=5),
        "more than 3 redirects (the last to http://127.0.0.1:{port})",
        1,
    ),
    "redirect to file://": (
        "download",
        Reply(redirect="file"),
        "http://127.0.0.1:{port} redirects to a URL that has unsupported scheme 'file' "
        "(only http and https)",
        1,
    ),
    "redirect without Location": (
        "download",
        Reply(redirect="no-location"),
        "HTTP 307 from http://127.0.0.1:{port} names no Location",
        1,
    ),
    "404": ("download", Reply(status=404), "download refused: HTTP 404 Not Found: hostile", 1),
    "403": ("download", Reply(status=403), "download refused: HTTP 403 Forbidden: hostile", 1),
    "429": ("download", Reply(status=429, retry_after="0"), "HTTP 429 Too Many Requests", 2),
    "500 with an endless body": (
        "download",
        Reply(status=500, body="endless", length="absent"),
        "HTTP 500 Internal Server Error (2 attempts)",
        2,
    ),
    "corrupt bytes": ("download", Reply(body="corrupt"), "received bytes do not match the oid", 1),
    "short body": ("download", Reply(body="short", length="promised"), "dropped (2 attempts)", 2),
    "file:// href": (
        "batch",
        Reply(batch="file_href"),
        "the server's batch response is malformed: its download href has unsupported scheme "
        "'file' (only http and https)",
        1,
    ),
    "invalid href": ("batch", Reply(batch="invalid_href"), "download href is not a valid URL", 1),
    "href with port -1": ("batch", Reply(batch="bad_port"), "href has port -1, outside 1-65535", 1),
    "href with a bad IDNA host": ("batch", Reply(batch="bad_idna"), "href is not a valid URL", 1),
    "header injection": (
        "batch",
        Reply(batch="bad_header"),
        "its download action has headers that are not valid HTTP",
        1,
    ),
    "oid not asked for": (
        "batch",
        Reply(batch="wrong_oid"),
        "the batch response from {lfs} names object 6b78438df33a, not one asked for",
        1,
    ),
    "oid that is a path": (
        "batch",
        Reply(batch="bad_oid"),
        "the batch response from {lfs} names an invalid oid '../../../../etc/passwd'",
        1,
    ),
    "wrong size": ("batch", Reply(batch="wrong_size"), f"size {REF.size + 1} where {REF.size}", 1),
    "oversized JSON": (
        "batch",
        Reply(batch="oversized"),
        "the batch response of 5243",
        1,
    ),
    "oversized JSON without a length": (
        "batch",
        Reply(batch="oversized", length="absent"),
        "the batch response runs past the 4194304 bytes expected; stopped",
        1,
    ),
    "deeply nested JSON": ("batch", Reply(batch="deep"), "is not JSON", 1),
    "not JSON": ("batch", Reply(batch="not_json"), "is not JSON", 1),
    "error with escapes": (
        "batch",
        Reply(batch="error_object"),
        "server error 410: gone fake: second line",
        1,
    ),
    "object left out": ("batch", Reply(batch="missing"), "the server's batch response left it", 1),
    "actions not an object": ("batch", Reply(batch="bad_actions"), "actions are not an object", 1),
    "batch redirect loop": ("batch", Reply(redirect="loop"), "redirect loop: ", 1),
    "batch stall": ("batch", Reply(stall=True), "too slow: nothing moved for 0.3 s", 2),
    "batch trickle": ("batch", Reply(trickle=0.05), "too slow: ", 2),
    "batch huge Content-Length": (
        "batch",
        Reply(length="huge"),
        "the batch response of 1000000000000 bytes exceeds the 4194304 allowed",
        1,
    ),
    "batch 404": ("batch", Reply(status=404), "no Git LFS server answers at", 1),
    "batch 422": ("batch", Reply(status=422), "batch request refused: HTTP 422", 1),
    "batch 429": ("batch", Reply(status=429), "HTTP 429 Too Many Requests", 2),
    "batch 503": ("batch", Reply(status=503), "HTTP 503 Service Unavailable", 2),
}


@pytest.mark.parametrize("case", DOWNLOAD_CASES, ids=list(DOWNLOAD_CASES))
def test_a_hostile_download_fails_in_one_line_with_nothing_left(case, repo, hostile, tmp_path):
    kind, reply, expected, requests = DOWNLOAD_CASES[case]
    hostile.always(kind, reply)
    store = ObjectStore(tmp_path / "store")
    message, _ = _fails(repo, hostile, store)
    assert expected.format(port=hostile.port, lfs=hostile.lfs_url(), oid=REF.oid) in message
    assert hostile.count(kind) == requests, message


def test_forbidden_batch_is_a_credentials_error_not_retried(repo, hostile, tmp_path):
    hostile.always("batch", Reply(status=403))
    store = ObjectStore(tmp_path / "store")
    with pytest.raises(CredentialsError, match="access denied"):
        _fetch(repo, hostile, store)
    assert hostile.count("batch") == 1


def test_honest_answers_and_short_redirect_chains_still_work(repo, hostile, tmp_path):
    for kind, reply in [
        ("download", Reply()),
        ("download", Reply(redirect="chain", hops=3)),
        ("batch", Reply(redirect="chain", hops=3)),
        ("download", Reply(status=503, times=1)),  # a transient error, then the object
    ]:
        hostile.reset()
        hostile.set(kind, reply)
        store = ObjectStore(tmp_path / f"store-{kind}-{reply.redirect}-{reply.status}")
        assert _fetch(repo, hostile, store).moved == 1
        assert store.get(REF) == DATA and _tmp_files(store) == []


def test_the_deadline_bounds_retries(repo, hostile, tmp_path):
    # The server asks us to come back in 1 s, forever; ten retries are allowed, the deadline
    # of 1.5 s (+ 16 KiB at 1 MiB/s) is not.
    options = TransferOptions(
        concurrency=1, max_retries=10, max_retry_delay=5.0, timeout=1.5, min_rate=1 << 20
    )
    hostile.always("download", Reply(status=503, retry_after="1"))
    store = ObjectStore(tmp_path / "store")
    message, elapsed = _fails(repo, hostile, store, options=options)
    assert "HTTP 503 Service Unavailable: hostile server says no (2 attempts, then not done " in (
        message
    )
    assert "theta.transfer.timeout + size / theta.transfer.minRate" in message
    assert hostile.count("download") == 2 and elapsed < 2.0


def test_credentials_never_show_and_never_leave_their_origin(repo, tmp_path):
    password = "s3cret-Pa55"
    token = base64.b64encode(f"user:{password}".encode()).decode()
    with HostileLfs(password=password) as server:
        server.objects[REF.oid] = DATA
        url = server.lfs_url(userinfo=f"user:{password}")
        # A redirect to another origin (the same server as `localhost`): the object arrives,
        # our Authorization does not go with it.
        server.set("download", Reply(redirect="cross-host"))
        assert _fetch(repo, server, ObjectStore(tmp_path / "a"), url=url).moved == 1
        assert server.authorizations("batch") == [f"Basic {token}"]
        assert server.authorizations("download") == [f"Basic {token}"]
        assert server.authorizations("hop") == [None]

        # A server that echoes our credentials back in its error message.
        for kind in ("batch", "download"):
            server.reset()
            server.always(kind, Reply(status=400, batch="echo_auth"))
            with pytest.raises(TransferError) as info:
                _fetch(repo, server, ObjectStore(tmp_path / kind), url=url)
            message = str(info.value)
            assert "you sent Basic ***" in message, message
            assert password not in message and token not in message
            assert message.startswith(
                f"download from origin (http://user:***@127.0.0.1:{server.port}"
            )


def _upload(repo, server, store, refs, options=FAST):
    transport = HttpTransport(Endpoint("origin", server.lfs_url()), repo, options)
    try:
        return run_transfer(transport, "upload", refs, store, concurrency=2)
    finally:
        transport.close()


UPLOAD_CASES = {
    "403": (Reply(status=403), "upload refused: HTTP 403 Forbidden", 1),
    "500": (Reply(status=500), "HTTP 500 Internal Server Error: hostile server says no", 2),
    "no answer": (Reply(silent=True), "too slow: nothing moved for 0.3 s", 2),
    "redirect loop": (Reply(redirect="loop"), "redirect loop: ", 1),
    "redirect to file://": (
        Reply(redirect="file"),
        "redirects to a URL that has unsupported scheme 'file'",
        1,
    ),
}


@pytest.mark.parametrize("case", UPLOAD_CASES, ids=list(UPLOAD_CASES))
def test_a_hostile_upload_fails_in_one_line(case, repo, tmp_path):
    reply, expected, requests = UPLOAD_CASES[case]
    store = ObjectStore(tmp_path / "store")
    ref = store.put([b"fresh object " * 1000])
    with HostileLfs() as server:
        server.always("upload", reply)
        start = time.monotonic()
        with pytest.raises(TransferError) as info:
            _upload(repo, server, store, [ref])
        assert time.monotonic() - start < BOUND_SECONDS
        message = str(info.value)
        assert "\n" not in message and expected in message, message
        assert message.startswith(f"upload to origin ({server.lfs_url()}) failed for 1 of 1 ")
        assert server.count("upload") == requests
        assert ref.oid not in server.objects and server.count("verify") == 0


def test_an_upload_follows_a_redirect_with_its_body(repo, tmp_path):
    store = ObjectStore(tmp_path / "store")
    ref = store.put([b"redirected object " * 1000])
    with HostileLfs() as server:
        server.set("upload", Reply(redirect="chain", hops=2))
        assert _upload(repo, server, store, [ref]).moved == 1
        assert server.objects[ref.oid] == store.get(ref)
        assert server.count("verify") == 1


def test_an_endless_download_never_puts_more_than_the_object_on_disk(repo, tmp_path):
    big = bytes(range(256)) * (16 << 10)  # 4 MiB
    ref = ObjectRef(hashlib.sha256(big).hexdigest(), len(big))
    store = ObjectStore(tmp_path / "store")
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            if store.tmp_dir.exists():
                sizes = []
                for path in store.tmp_dir.iterdir():
                    try:
                        sizes.append(path.stat().st_size)
                    except FileNotFoundError:
                        pass
                peak = max(peak, sum(sizes))
            time.sleep(0.001)

    with HostileLfs() as server:
        server.objects[ref.oid] = big
        server.always("download", Reply(body="endless", length="absent"))
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            transport = HttpTransport(Endpoint("origin", server.lfs_url()), repo, FAST)
            with pytest.raises(TransferError, match="the download runs past the 4194304 bytes"):
                run_transfer(transport, "download", [ref], store, concurrency=1)
            transport.close()
        finally:
            done.set()
            watcher.join()
    assert peak <= ref.size
    assert not store.has(ref) and _tmp_files(store) == []


def test_a_redirect_from_https_to_http_is_refused():
    # In memory: the hostile server speaks no TLS.
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        if request.url.scheme == "https":
            return httpx.Response(302, headers={"Location": "http://lfs.test/plain"})
        return httpx.Response(200, content=b"must not be asked for")

    client = httpx.Client(transport=httpx.MockTransport(handler))
    session = Session(FAST, pool=1, client=client)
    with pytest.raises(ObjectFailed) as info:
        with session.open("GET", "https://lfs.test/x", headers={}, body=None, pace=Pace(FAST, 0)):
            pass
    assert str(info.value) == "https://lfs.test redirects from https to http (http://lfs.test)"
    assert requests == ["https://lfs.test/x"]
