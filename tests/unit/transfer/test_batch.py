"""The HTTP adapter and the queue against an in-memory server (httpx.MockTransport)."""

from __future__ import annotations

import hashlib
import io
import json
import threading

import httpx
import pytest

from git_theta.errors import CredentialsError, TransferError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.transfer.batch import HttpTransport
from git_theta.transfer.endpoint import Endpoint
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.progress import Progress
from git_theta.transfer.queue import failure_message, run_transfer

URL = "https://lfs.test/org/m.git/info/lfs"
FAST = TransferOptions(concurrency=4, max_retries=2, max_retry_delay=0.0)


class FakeLfs:
    """A minimal batch API + basic transfer server in memory."""

    def __init__(self, *, password: str | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.password = password
        self.batches: list[dict] = []
        self.verified: list[str] = []
        self.fail: dict[str, list[int]] = {}  # path kind -> statuses to answer first
        self.lock = threading.Lock()

    def _next_fault(self, kind: str) -> int | None:
        with self.lock:
            queue = self.fail.get(kind)
            return queue.pop(0) if queue else None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/objects/batch"):
            if self.password is not None:
                expected = httpx.BasicAuth("me", self.password)
                got = request.headers.get("Authorization")
                if got != next(expected.auth_flow(httpx.Request("GET", "/"))).headers.get(
                    "Authorization"
                ):
                    return httpx.Response(401, json={"message": "Credentials needed"})
            status = self._next_fault("batch")
            if status:
                return httpx.Response(status, json={"message": "busy"})
            body = json.loads(request.content)
            self.batches.append(body)
            out = []
            for o in body["objects"]:
                entry: dict = {"oid": o["oid"], "size": o["size"]}
                href = f"https://storage.test/{o['oid']}"
                if body["operation"] == "upload":
                    if o["oid"] not in self.objects:
                        entry["actions"] = {
                            "upload": {"href": href, "header": {"X-Token": "t"}},
                            "verify": {"href": "https://lfs.test/verify"},
                        }
                elif o["oid"] in self.objects:
                    entry["actions"] = {"download": {"href": href}}
                else:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
                out.append(entry)
            return httpx.Response(200, json={"transfer": "basic", "objects": out})
        if path == "/verify":
            self.verified.append(json.loads(request.content)["oid"])
            return httpx.Response(200)
        oid = path.rsplit("/", 1)[1]
        status = self._next_fault(request.method)
        if status:
            return httpx.Response(status)
        if request.method == "PUT":
            assert request.headers["X-Token"] == "t"
            self.objects[oid] = request.read()
            return httpx.Response(200)
        return httpx.Response(200, content=self.objects[oid])


@pytest.fixture
def repo(gitenv):
    path = gitenv.init_repo()
    return Repo(path)


def _transport(repo, server, options=FAST):
    client = httpx.Client(transport=httpx.MockTransport(server))
    return HttpTransport(Endpoint("origin", URL), repo, options, client=client)


def _put(store: ObjectStore, n: int) -> list[ObjectRef]:
    return [store.put([f"object {i}".encode() * 10]) for i in range(n)]


def test_upload_then_download_in_batches_of_100(repo, tmp_path):
    server = FakeLfs()
    local = ObjectStore(tmp_path / "a")
    refs = _put(local, 150)
    stats = run_transfer(_transport(repo, server), "upload", refs, local, concurrency=4)
    assert (stats.asked, stats.moved) == (150, 150)
    assert [len(b["objects"]) for b in server.batches] == [100, 50]
    assert sorted(server.verified) == sorted(r.oid for r in refs)

    again = run_transfer(_transport(repo, server), "upload", refs, local, concurrency=4)
    assert again.moved == 0  # the server has them all

    other = ObjectStore(tmp_path / "b")
    run_transfer(_transport(repo, server), "download", refs, other, concurrency=4)
    assert all(other.get(r) == local.get(r) for r in refs)


def test_5xx_is_retried_with_backoff(repo, tmp_path):
    server = FakeLfs()
    server.fail = {"batch": [503, 500], "PUT": [502]}
    local = ObjectStore(tmp_path / "a")
    refs = _put(local, 1)
    run_transfer(_transport(repo, server), "upload", refs, local, concurrency=1)
    assert set(server.objects) == {refs[0].oid}


def test_download_errors_name_the_objects_and_their_users(repo, tmp_path):
    server = FakeLfs()
    ref = ObjectRef(hashlib.sha256(b"x").hexdigest(), 1)
    with pytest.raises(TransferError) as info:
        run_transfer(
            _transport(repo, server),
            "download",
            [ref],
            ObjectStore(tmp_path),
            concurrency=1,
            users={ref.oid: ["model.safetensors: embed.weight"]},
        )
    assert str(info.value) == (
        f"download from origin ({URL}) failed for 1 of 1 object(s): server error 404: Object "
        f"does not exist: {ref.oid[:12]} (model.safetensors: embed.weight)"
    )
    assert info.value.failures == {ref.oid: "server error 404: Object does not exist"}


def test_bytes_that_do_not_match_never_enter_the_store(repo, tmp_path):
    server = FakeLfs()
    ref = ObjectRef(hashlib.sha256(b"right").hexdigest(), 5)
    server.objects[ref.oid] = b"wrong"
    store = ObjectStore(tmp_path)
    with pytest.raises(TransferError, match="received bytes do not match the oid"):
        run_transfer(_transport(repo, server), "download", [ref], store, concurrency=1)
    assert not store.has(ref)
    assert list(store.tmp_dir.iterdir()) == []


def test_credentials_come_from_git_credential_and_bad_ones_are_rejected(repo, tmp_path, gitenv):
    cred_store = tmp_path / "creds"
    cred_store.write_text("https://me:good@lfs.test\n")
    gitenv.git("config", "credential.helper", f"store --file={cred_store}", cwd=repo.toplevel)
    local = ObjectStore(tmp_path / "a")
    refs = _put(local, 1)
    run_transfer(_transport(repo, FakeLfs(password="good")), "upload", refs, local, concurrency=1)

    with pytest.raises(CredentialsError, match="the server refused the credentials"):
        run_transfer(
            _transport(repo, FakeLfs(password="other")), "upload", refs, local, concurrency=1
        )
    assert cred_store.read_text() == ""  # rejected, so the helper forgot it


def test_a_password_in_the_url_is_used(repo, tmp_path):
    server = FakeLfs(password="inline")
    client = httpx.Client(transport=httpx.MockTransport(server))
    endpoint = Endpoint("origin", "https://me:inline@lfs.test/org/m.git/info/lfs")
    local = ObjectStore(tmp_path)
    refs = _put(local, 2)
    transport = HttpTransport(endpoint, repo, FAST, client=client)
    assert run_transfer(transport, "upload", refs, local, concurrency=2).moved == 2


def test_failure_message_groups_reasons():
    failures = {"a" * 64: "HTTP 500", "b" * 64: "HTTP 500", "c" * 64: "HTTP 404", "d" * 64: "x"}
    msg = failure_message(
        "upload", "origin (u)", failures, 10, {"a" * 64: ["m: p", "n: q", "o: r"]}
    )
    assert msg == (
        "upload to origin (u) failed for 4 of 10 object(s): HTTP 500 (and 2 other error(s)): "
        f"{'a' * 12} (m: p, n: q, ...), {'b' * 12}, {'c' * 12} and 1 more"
    )


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal_after_a_second(monkeypatch):
    import git_theta.transfer.progress as progress

    quiet = io.StringIO()
    p = Progress("Uploading", stream=quiet)
    p.expect(10)
    monkeypatch.setattr(progress, "SHOW_AFTER_SECONDS", 0.0)
    p.advance(10)
    p.finish()
    assert quiet.getvalue() == ""

    tty = _Tty()
    p = Progress("Uploading", stream=tty)
    p.expect(1 << 20)
    p.advance(1 << 20)
    p.finish()
    assert tty.getvalue().startswith("\rUploading: [########################] 1/1 objects, 1.0 MiB")
    assert tty.getvalue().endswith("\n")
