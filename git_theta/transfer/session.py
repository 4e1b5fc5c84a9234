"""HTTP for the LFS adapter: bounded redirects, bounded bodies, deadlines and retries.

Everything a server says is bounded before it costs memory, disk or time:

- redirects are followed by hand, at most MAX_REDIRECTS of them (Git LFS stops at 3 requests;
  we allow one more hop), never to another scheme than http(s), never from https to http, and
  without our Authorization header once they leave the endpoint's origin (as Git LFS does);
  a redirect's own body is never read;
- a body is read only up to the bytes we expect, and a Content-Length above them is refused
  before a byte is read;
- each operation runs under a `Pace` (deadline and minimum rate, pace.py).

A 5xx, 429, dropped connection or stall is retried with exponential back-off while the
operation's deadline allows; anything else (4xx, an unsupported scheme, an invalid URL, too
many redirects) is permanent and fails at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx

from git_theta.transfer.base import ObjectFailed
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.pace import Pace, TooSlow
from git_theta.transfer.redact import clean_text, shown_value, strip_url

__all__ = [
    "Body",
    "Retryable",
    "Session",
    "content_length",
    "http_url",
    "origin_of",
]

# Worth another attempt: the server is overloaded or restarting, or asks us to slow down.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Redirects followed per request; one more than Git LFS (which stops at the third request).
MAX_REDIRECTS = 3
# Of an error response we read at most this much, for its message.
MAX_MESSAGE_BYTES = 64 << 10
# Seconds to open a connection (within the operation's deadline).
CONNECT_TIMEOUT = 10.0
# Upload pieces: one socket write each, so the write timeout (the rate window) only has to
# cover this much even at the minimum rate.
UPLOAD_CHUNK_BYTES = 64 << 10
SCHEMES = ("http", "https")

T = TypeVar("T")
# A request body: bytes, or a function giving a fresh iterable each time it is sent (a
# redirect or a retry sends it again).
Body = bytes | Callable[[], Iterable[bytes]] | None


class Retryable(Exception):
    """A failure worth another attempt (5xx, 429): carries the response's description."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def http_url(text: str | httpx.URL, base: httpx.URL | None = None) -> httpx.URL:
    """`text` (resolved against `base`) as an absolute http(s) URL we can connect to.

    Raises:
        ValueError: not one; the message says why, without the URL (it may hold secrets).
    """
    try:
        url = base.join(text) if base is not None else httpx.URL(text)
        scheme, host, port = url.scheme, url.host, url.port
    except (httpx.InvalidURL, ValueError):  # ValueError: IDNA and other encoding errors
        raise ValueError("is not a valid URL") from None
    if scheme not in SCHEMES:
        raise ValueError(f"has unsupported scheme {shown_value(scheme)} (only http and https)")
    if not host:
        raise ValueError("has no host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"has port {port}, outside 1-65535")
    return url


def origin_of(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit."""
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, parsed.host, port


def content_length(resp: httpx.Response) -> int | None:
    """The Content-Length the server declared, or None (absent, or chunked)."""
    raw = resp.headers.get("Content-Length")
    return int(raw) if raw is not None and raw.isdigit() else None


def _raw_chunks(resp: httpx.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive, undecoded."""
    if resp.is_stream_consumed:  # built in memory (httpx.MockTransport): already whole
        yield resp.content
        return
    yield from resp.iter_raw()


def _transport_error(exc: httpx.TransportError) -> str:
    kind = {
        httpx.ConnectError: "cannot connect",
        httpx.ConnectTimeout: "connection timed out",
        httpx.PoolTimeout: "no free connection",
        httpx.RemoteProtocolError: "the connection was dropped",
        httpx.ReadError: "the connection was dropped",
        httpx.WriteError: "the connection was dropped while sending",
    }.get(type(exc), "network error")
    if kind.startswith("the connection was dropped"):
        return kind  # the byte counts differ per object; one reason reads better in a summary
    detail = clean_text(str(exc), limit=120)
    return f"{kind} ({detail})" if detail else kind


class Session:
    """One httpx client (keep-alive across batches and objects), used from several threads.

    Args:
        options: the retry policy and the bounds.
        pool: connections kept open at most.
        client: an httpx client to use instead of a new one (tests pass a MockTransport).
    """

    def __init__(
        self, options: TransferOptions, *, pool: int, client: httpx.Client | None = None
    ) -> None:
        self.options = options
        # Credentials of ours that a server might echo back in a message.
        # Replaced whole, never changed in place: other threads iterate it.
        self.secrets: frozenset[str] = frozenset()
        self._client = client or httpx.Client(
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            follow_redirects=False,
            # Objects are compressed already; a decoded body would escape our byte counts.
            headers={"Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self._client.close()

    def _timeout(self, pace: Pace) -> httpx.Timeout:
        wait = pace.socket_timeout()
        remaining = max(0.001, pace.remaining())
        write = min(max(wait, UPLOAD_CHUNK_BYTES / self.options.min_rate), remaining)
        return httpx.Timeout(
            min(CONNECT_TIMEOUT, remaining), read=wait, write=write, pool=remaining
        )

    @contextmanager
    def open(
        self, method: str, url: str, *, headers: dict[str, str], body: Body, pace: Pace
    ) -> Iterator[httpx.Response]:
        """Send a request and yield its final response, headers read and body not.

        Raises:
            ObjectFailed: an unsupported scheme, an invalid URL or a redirect we refuse.
            httpx.HTTPError: the network failed (see `retrying`).
        """
        visited: list[str] = []
        headers = dict(headers)
        while True:
            target = self._checked_url(url)
            visited.append(str(target))
            content = body() if callable(body) else body
            request = self._client.build_request(
                method, target, headers=headers, content=content, timeout=self._timeout(pace)
            )
            resp = self._client.send(request, stream=True)
            if resp.status_code not in REDIRECT_STATUSES:
                break
            location = resp.headers.get("Location")
            resp.close()  # a redirect's body is never read
            # Hosts only, no paths: objects failing alike then share one reason in the summary.
            where = strip_url(url, path=False)
            if not location:
                raise ObjectFailed(f"HTTP {resp.status_code} from {where} names no Location")
            try:
                following = http_url(location, base=target)
            except ValueError as exc:
                raise ObjectFailed(f"{where} redirects to a URL that {exc}") from None
            shown = strip_url(str(following), path=False)
            if str(following) in visited:
                raise ObjectFailed(f"redirect loop: {where} redirects back to a URL it came from")
            if len(visited) > MAX_REDIRECTS:
                raise ObjectFailed(f"more than {MAX_REDIRECTS} redirects (the last to {shown})")
            if target.scheme == "https" and following.scheme == "http":
                raise ObjectFailed(f"{where} redirects from https to http ({shown})")
            if origin_of(following) != origin_of(target):
                # Our credentials stay with the host they were meant for (the headers the
                # server gave for its action go on, as Git LFS sends them).
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = str(following)
        try:
            yield resp
        finally:
            resp.close()

    @staticmethod
    def _checked_url(url: str) -> httpx.URL:
        try:
            return http_url(url)
        except ValueError as exc:
            raise ObjectFailed(f"the URL {strip_url(url, path=False)} {exc}") from None

    def read(self, resp: httpx.Response, limit: int, pace: Pace, what: str) -> bytes:
        """The whole body of `resp`, refused once it passes `limit` bytes.

        Raises:
            ObjectFailed: the body is (or is declared) larger than `limit`, or encoded.
            TooSlow: the deadline passed or the rate fell below the minimum.
        """
        declared = content_length(resp)
        if declared is not None and declared > limit:
            raise ObjectFailed(f"{what} of {declared} bytes exceeds the {limit} allowed")
        return b"".join(self.iter_body(resp, limit, pace, what))

    def iter_body(self, resp: httpx.Response, limit: int, pace: Pace, what: str) -> Iterator[bytes]:
        """The body of `resp` as it arrives, stopped the moment it passes `limit` bytes."""
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ObjectFailed(f"{what} came with Content-Encoding {shown_value(encoding)}")
        received = 0
        for chunk in _raw_chunks(resp):
            received += len(chunk)
            if received > limit:
                raise ObjectFailed(f"{what} runs past the {limit} bytes expected; stopped")
            pace.advance(len(chunk))
            yield chunk

    def describe(self, resp: httpx.Response, pace: Pace) -> str:
        """`HTTP 404 Not Found: <the server's message>`, one clean line."""
        text = f"HTTP {resp.status_code} {clean_text(resp.reason_phrase, limit=60)}".rstrip()
        body = bytearray()
        for chunk in _raw_chunks(resp):
            body += chunk
            pace.advance(len(chunk))
            if len(body) >= MAX_MESSAGE_BYTES:
                break
        try:
            message = json.loads(bytes(body)).get("message") if body else None
        except (ValueError, AttributeError, RecursionError):
            message = None
        if isinstance(message, str) and message.strip():
            return f"{text}: {clean_text(message, self.secrets)}"
        return text

    def retrying(self, attempt: Callable[[], T], pace: Pace) -> T:
        """Run `attempt`, again after a back-off on a dropped connection, stall, 5xx or 429,
        while attempts remain and the operation's deadline allows.

        Raises:
            ObjectFailed: a permanent failure, or still failing when attempts or time ran out.
        """
        tries = self.options.max_retries + 1
        number = 0
        while True:
            number += 1
            pace.start_attempt()
            wait: float | None = None
            try:
                return attempt()
            except Retryable as exc:
                reason, wait = str(exc), exc.retry_after
            except TooSlow as exc:
                reason = str(exc)
            except (httpx.ReadTimeout, httpx.WriteTimeout):
                reason = pace.silence_reason()
            except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                raise ObjectFailed(f"cannot send the request ({clean_text(str(exc))})") from None
            except httpx.TransportError as exc:
                reason = _transport_error(exc)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise ObjectFailed(clean_text(str(exc), self.secrets)) from None
            delay = self.options.retry_delay(number)
            if wait is not None:
                delay = min(wait, self.options.max_retry_delay)
            attempts = f"{number} attempt{'s' if number > 1 else ''}"
            if number >= tries:
                raise ObjectFailed(f"{reason} ({attempts})")
            if pace.remaining() <= delay:
                if reason == pace.deadline_reason():
                    raise ObjectFailed(f"{reason} ({attempts})")
                raise ObjectFailed(f"{reason} ({attempts}, then {pace.deadline_reason()})")
            time.sleep(delay)
