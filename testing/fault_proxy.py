"""A small HTTP proxy on 127.0.0.1 that injects faults between a client and a real LFS server.

Real sockets, real HTTP: the client under test sees a server that answers 500 or 404, sends
bytes that do not match the oid, or drops the connection half-way through a body. The Host
header is passed on unchanged, so the server's action URLs point back at the proxy and object
transfers go through it too. It also counts requests (e.g. batch calls per checkout).
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

__all__ = ["Fault", "FaultProxy"]

# A held response is let go after this long even if the test never releases it.
HOLD_LIMIT = 120.0

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


@dataclass
class Fault:
    """What to do to matching requests.

    Attributes:
        kind: "status" answers `status` without asking the server; "corrupt" flips a byte of
            the server's answer; "drop" sends the headers and half the body, then closes;
            "hold" sends the headers and half the body, sets `FaultProxy.holding` and waits
            for `FaultProxy.release` (a client caught mid-download), then closes.
        method, path: the request matches when its method equals `method` (if given) and its
            path contains `path`.
        times: how many matching requests to hit (None: all).
    """

    kind: Literal["status", "corrupt", "drop", "hold"]
    path: str = ""
    method: str | None = None
    status: int = 500
    times: int | None = None

    def take(self, method: str, path: str) -> bool:
        if (self.method and method != self.method) or self.path not in path:
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        return True


class FaultProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<upstream_port>, applying `faults` in order."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if path in p and (method is None or m == method))

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.take(method, path):
                    return fault
        return None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._fault_for(h.command, h.path)
        if fault is not None and fault.kind == "status":
            payload = b'{"message": "injected fault"}'
            h.send_response(fault.status)
            h.send_header("Content-Type", "application/vnd.git-lfs+json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(h.command, h.path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
            out_headers = [
                (k, v)
                for k, v in resp.getheaders()
                if k.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}
            ]
            status = resp.status
        finally:
            upstream.close()
        if fault is not None and fault.kind == "corrupt" and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        h.send_response(status)
        for k, v in out_headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if fault is not None and fault.kind in ("drop", "hold"):
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            if fault.kind == "hold":
                self.holding.set()
                self.release.wait(HOLD_LIMIT)
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:  # the client is gone already (killed while held)
                pass
            return
        h.wfile.write(data)

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
