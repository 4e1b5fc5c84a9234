"""A Git LFS server on 127.0.0.1 that misbehaves on request.

Honest by default: it speaks the batch API and the basic transfer adapter, keeps objects in
memory, and a real `git push` / `git clone` / `git theta fetch` works against it. A test then
picks, per kind of request ("batch", "download", "upload", "verify"), the `Reply` the server
gives instead: a status code, a Content-Length that lies, a body that is short, long, endless or
corrupt, bytes trickled slowly or never sent, a redirect chain or loop, or a batch response that
names a file:// href, another oid, a wrong size, or is oversized or nested too deep.

It counts every request (`count`), so a test can tell a retried error from a permanent one, and
records whether each request carried an Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

__all__ = ["HostileLfs", "Reply"]

LFS_JSON = "application/vnd.git-lfs+json"
# The declared length of a "huge" body.
HUGE = 10**12
# Junk written per piece of an endless body; the client hangs up long before it matters.
JUNK = b"x" * (64 << 10)
# The longest a stalled or endless reply keeps its thread (the client is gone long before).
MAX_HOLD_SECONDS = 30.0

Kind = Literal["batch", "download", "upload", "verify"]
Length = Literal["true", "absent", "huge", "promised"]
BodyMode = Literal["exact", "short", "long", "endless", "corrupt", "empty"]
Redirect = Literal["chain", "loop", "file", "cross-host", "no-location"]
BatchMutation = Literal[
    "file_href",
    "invalid_href",
    "bad_port",
    "bad_idna",
    "wrong_oid",
    "bad_oid",
    "wrong_size",
    "oversized",
    "deep",
    "not_json",
    "bad_header",
    "error_object",
    "missing",
    "bad_actions",
    "echo_auth",
]


@dataclass
class Reply:
    """How the server answers one request (fields that do not apply to its kind are ignored).

    Attributes:
        status: the status code; a non-2xx answer carries `{"message": ...}`.
        retry_after: a Retry-After header value.
        length: Content-Length: the true length of what is sent, none (the body ends when the
            connection closes), 10**12, or the length of the honest body whatever is sent.
        body: the honest body, one byte short, 1 KiB too long, endless, one byte flipped, none.
        trickle: seconds between pieces of `trickle_bytes` bytes (0: as fast as possible).
        stall: send the headers, then nothing.
        silent: send nothing at all, not even a status line.
        redirect: answer with a redirect instead: `hops` redirects then the real answer, a loop,
            to a file:// URL, to the same server under another host name (a different origin),
            or with no Location.
        batch: how to falsify a batch response.
        times: how many requests this reply answers before the next one (or honesty) applies.
    """

    status: int = 200
    retry_after: str | None = None
    length: Length = "true"
    body: BodyMode = "exact"
    trickle: float = 0.0
    trickle_bytes: int = 1
    stall: bool = False
    silent: bool = False
    redirect: Redirect | None = None
    hops: int = 1
    batch: BatchMutation | None = None
    message: str = "hostile server says no"
    times: int | None = None


@dataclass
class _Request:
    kind: str
    method: str
    path: str
    authorization: str | None


@dataclass
class HostileLfs:
    """The server; `start()` it (or use it as a context manager) and `stop()` it.

    Attributes:
        objects: oid -> bytes the server holds.
        plan: kind -> replies given in order (a reply with `times=None` stays for good).
        password: when set, the batch endpoint wants Basic `user:password`.
    """

    user: str = "user"
    password: str | None = None
    objects: dict[str, bytes] = field(default_factory=dict)
    plan: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[_Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                try:
                    server._serve(self)
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> HostileLfs:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HostileLfs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests use ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lfs_url(self, repo: str = "org/model", *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/{repo}.git/info/lfs"

    def set(self, kind: Kind, *replies: Reply) -> None:
        """Answer requests of `kind` with `replies`, in order; then honestly."""
        with self._lock:
            self.plan[kind] = list(replies)

    def always(self, kind: Kind, reply: Reply) -> None:
        """Answer every request of `kind` with `reply`."""
        self.set(kind, Reply(**{**reply.__dict__, "times": None}))

    def reset(self) -> None:
        """Honest again, with the request log cleared (objects are kept)."""
        with self._lock:
            self.plan.clear()
            self.requests.clear()

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if kind is None or r.kind == kind)

    def authorizations(self, kind: str) -> list[str | None]:
        with self._lock:
            return [r.authorization for r in self.requests if r.kind == kind]

    # ---- serving ------------------------------------------------------------------------

    def _next(self, kind: str) -> Reply | None:
        with self._lock:
            queue = self.plan.get(kind)
            if not queue:
                return None
            reply = queue[0]
            if reply.times is not None:
                reply.times -= 1
                if reply.times <= 0:
                    queue.pop(0)
            return reply

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = h.path
        kind = self._kind(h.command, path)
        with self._lock:
            self.requests.append(_Request(kind, h.command, path, h.headers.get("Authorization")))
        if kind in ("hop", "loop"):
            return self._serve_redirect_path(h, path, body)
        reply = self._next(kind) or Reply()
        if reply.silent:
            return self._hold(h)
        if reply.redirect is not None:
            return self._redirect(h, path, reply)
        if kind == "batch" and self.password is not None and not self._authorized(h):
            return self._send(h, 401, json.dumps({"message": "credentials needed"}).encode())
        if not 200 <= reply.status < 300:
            message = reply.message
            if reply.batch == "echo_auth":
                message += f" (you sent {h.headers.get('Authorization')})"
            return self._send(h, reply.status, json.dumps({"message": message}).encode(), reply)
        self._honest(h, kind, path, body, reply)

    @staticmethod
    def _kind(method: str, path: str) -> str:
        if path.startswith("/hop/"):
            return "hop"
        if path.startswith("/loop/"):
            return "loop"
        if path.endswith("/objects/batch"):
            return "batch"
        if path.startswith("/verify"):
            return "verify"
        if path.startswith("/objects/"):
            return "upload" if method == "PUT" else "download"
        return "unknown"

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return h.headers.get("Authorization") == f"Basic {token}"

    def _honest(
        self, h: BaseHTTPRequestHandler, kind: str, path: str, body: bytes, reply: Reply
    ) -> None:
        if kind == "batch":
            return self._send(h, 200, self._batch_answer(h, body, reply), reply, LFS_JSON)
        if kind == "verify":
            return self._send(h, 200, b"{}", reply, LFS_JSON)
        oid = path.rsplit("/", 1)[-1]
        if kind == "upload":
            if hashlib.sha256(body).hexdigest() == oid:
                with self._lock:
                    self.objects[oid] = body
                return self._send(h, 200, b"", reply)
            return self._send(h, 422, b'{"message": "bytes do not match the oid"}')
        data = self.objects.get(oid)
        if data is None:
            return self._send(h, 404, b'{"message": "no such object"}')
        self._send(h, 200, data, reply, "application/octet-stream")

    def _batch_answer(self, h: BaseHTTPRequestHandler, body: bytes, reply: Reply) -> bytes:
        request = json.loads(body)
        base = f"http://{h.headers.get('Host') or f'127.0.0.1:{self.port}'}"
        out = []
        for o in request["objects"]:
            oid, size = o["oid"], o["size"]
            entry: dict[str, object] = {"oid": oid, "size": size}
            href = f"{base}/objects/{oid}"
            if request["operation"] == "upload":
                if oid not in self.objects:
                    entry["actions"] = {
                        "upload": {"href": href},
                        "verify": {"href": f"{base}/verify"},
                    }
            elif oid in self.objects:
                entry["actions"] = {"download": {"href": href, "header": {"X-Ticket": "t"}}}
            else:
                entry["error"] = {"code": 404, "message": "Object does not exist"}
            out.append(entry)
        doc: object = {"transfer": "basic", "objects": out}
        mutation = reply.batch
        first = out[0] if out else {}
        action_name = "upload" if request["operation"] == "upload" else "download"
        hrefs = {
            "file_href": "file:///etc/passwd",
            "invalid_href": "http://[::1",
            "bad_port": f"http://127.0.0.1:-1/objects/{first.get('oid')}",
            "bad_idna": "http://xn--abc-/x",
        }
        if (mutation in hrefs or mutation == "bad_header") and "actions" in first:
            action = first["actions"][action_name]  # type: ignore[index]
            if mutation in hrefs:
                action["href"] = hrefs[mutation]
            else:
                action["header"] = {"X-Evil": "a\r\nInjected: yes"}
        elif mutation == "wrong_oid" and first:
            first["oid"] = hashlib.sha256(b"not asked for").hexdigest()
        elif mutation == "bad_oid" and first:
            first["oid"] = "../../../../etc/passwd"
        elif mutation == "wrong_size" and first:
            first["size"] = int(first["size"]) + 1  # type: ignore[call-overload]
        elif mutation == "error_object" and first:
            first.pop("actions", None)
            first["error"] = {"code": 410, "message": "gone\n\x1b[31mfake: second line"}
        elif mutation == "missing":
            doc = {"transfer": "basic", "objects": out[1:]}
        elif mutation == "bad_actions" and first:
            first["actions"] = ["download", "http://evil/"]
        elif mutation == "oversized":
            doc = {"transfer": "basic", "objects": out, "padding": " " * (5 << 20)}
        elif mutation == "deep":
            return b"[" * 200_000 + b"]" * 200_000
        elif mutation == "not_json":
            return b"<html>Welcome to nginx</html>"
        return json.dumps(doc).encode()

    def _redirect(self, h: BaseHTTPRequestHandler, path: str, reply: Reply) -> None:
        if reply.redirect == "chain":
            location = f"/hop/{reply.hops - 1}{path}"
        elif reply.redirect == "loop":
            location = "/loop/a"
        elif reply.redirect == "file":
            location = "file:///etc/passwd"
        elif reply.redirect == "cross-host":
            location = f"http://localhost:{self.port}/hop/0{path}"
        else:
            location = ""
        self._send_redirect(h, location)

    def _serve_redirect_path(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if path.startswith("/loop/"):
            return self._send_redirect(h, "/loop/b" if path == "/loop/a" else "/loop/a")
        _, _, hops, rest = path.split("/", 3)
        if int(hops) > 0:
            return self._send_redirect(h, f"/hop/{int(hops) - 1}/{rest}")
        rest = "/" + rest
        kind = self._kind(h.command, rest)
        self._honest(h, kind, rest, body, Reply())

    def _send_redirect(self, h: BaseHTTPRequestHandler, location: str) -> None:
        h.send_response(307)
        if location:
            h.send_header("Location", location)
        # A body that never ends: a client that reads a redirect's body never gets past it.
        h.send_header("Content-Length", str(HUGE))
        h.end_headers()
        h.close_connection = True
        self._write_forever(h, b"")

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        payload: bytes,
        reply: Reply | None = None,
        content_type: str = LFS_JSON,
    ) -> None:
        reply = reply or Reply()
        data = _mutated(payload, reply.body)
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        if reply.retry_after is not None:
            h.send_header("Retry-After", reply.retry_after)
        declared = {
            "true": None if reply.body == "endless" else len(data),
            "absent": None,
            "huge": HUGE,
            "promised": len(payload),
        }[reply.length]
        if declared is not None:
            h.send_header("Content-Length", str(declared))
        if declared is None or declared != len(data) or reply.body == "endless":
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if reply.stall:
            self._hold(h)
            return
        self._write(h, data, reply)
        if reply.body == "endless" or reply.length == "huge":
            self._write_forever(h, b"")
        elif h.close_connection:
            h.wfile.flush()

    def _write(self, h: BaseHTTPRequestHandler, data: bytes, reply: Reply) -> None:
        if reply.trickle <= 0:
            h.wfile.write(data)
            return
        step = max(1, reply.trickle_bytes)
        deadline = time.monotonic() + MAX_HOLD_SECONDS
        for start in range(0, len(data), step):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            h.wfile.write(data[start : start + step])
            h.wfile.flush()
            time.sleep(reply.trickle)

    def _write_forever(self, h: BaseHTTPRequestHandler, first: bytes) -> None:
        deadline = time.monotonic() + MAX_HOLD_SECONDS
        h.wfile.write(first)
        while not self._stop.is_set() and time.monotonic() < deadline:
            h.wfile.write(JUNK)
        h.close_connection = True

    def _hold(self, h: BaseHTTPRequestHandler) -> None:
        """Send nothing more until the client hangs up (or the server stops)."""
        h.wfile.flush()
        h.close_connection = True
        deadline = time.monotonic() + MAX_HOLD_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([h.connection], [], [], 0.05)
            if readable and not h.connection.recv(1, socket.MSG_PEEK):
                return


def _mutated(payload: bytes, mode: BodyMode) -> bytes:
    if mode == "short":
        return payload[:-1]
    if mode == "long":
        return payload + b"x" * 1024
    if mode == "corrupt" and payload:
        return bytes([payload[0] ^ 0xFF]) + payload[1:]
    if mode == "empty":
        return b""
    return payload
