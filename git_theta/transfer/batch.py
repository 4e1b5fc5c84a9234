"""The Git LFS batch API over HTTP(S), with the basic transfer adapter.

One `httpx.Client` per transport keeps connections alive across batches and objects; the queue
calls `upload`/`download` from several threads at once. A 5xx, 429 or dropped connection is
retried with exponential back-off; 401 asks `git credential fill` once, then rejects what the
helper gave if the server refuses it too.

Specs: https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md and
https://github.com/git-lfs/git-lfs/blob/main/docs/api/basic-transfers.md
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.transfer import credentials
from git_theta.transfer.base import (
    CHUNK_BYTES,
    Action,
    BatchFailed,
    ObjectFailed,
    Operation,
    PlannedObject,
    read_chunks,
    write_verified,
)
from git_theta.transfer.endpoint import Endpoint
from git_theta.transfer.options import TransferOptions

__all__ = ["HttpTransport"]

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
# Worth another attempt: the server is overloaded or restarting, or asks us to slow down.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Seconds; a read timeout is per chunk received, not per object.
CONNECT_TIMEOUT = 10.0
IO_TIMEOUT = 120.0

T = TypeVar("T")


class _Retryable(Exception):
    """A failure worth another attempt (5xx, 429): carries the response's description."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _describe(resp: httpx.Response) -> str:
    text = f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
    try:
        message = resp.json().get("message") if resp.content else None
    except (ValueError, AttributeError):
        message = None
    return f"{text}: {message}" if isinstance(message, str) and message else text


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _transport_error(exc: httpx.TransportError) -> str:
    kind = {
        httpx.ConnectError: "cannot connect",
        httpx.ConnectTimeout: "connection timed out",
        httpx.ReadTimeout: "timed out waiting for the server",
        httpx.WriteTimeout: "timed out sending",
        httpx.RemoteProtocolError: "the connection was dropped",
        httpx.ReadError: "the connection was dropped",
        httpx.WriteError: "the connection was dropped while sending",
    }.get(type(exc), "network error")
    if kind.startswith("the connection was dropped"):
        return kind  # the byte counts differ per object; one reason reads better in a summary
    detail = str(exc).strip()
    return f"{kind} ({detail})" if detail else kind


class HttpTransport:
    """The basic transfer adapter against one LFS endpoint.

    Args:
        endpoint: an http(s) endpoint (`.../info/lfs`).
        repo: for `git credential`.
        options: concurrency (connection pool size) and retry policy.
        client: an httpx client to use instead of a new one (tests pass a MockTransport).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        repo: Repo,
        options: TransferOptions,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self.description = endpoint.description
        self._repo = repo
        self._options = options
        parts = urlsplit(endpoint.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self._url = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
        self._origin = (parts.scheme, netloc)
        self._credential: credentials.Credential | None = None
        if parts.password is not None:
            self._credential = credentials.Credential(
                self._url, unquote(parts.username or ""), unquote(parts.password)
            )
        self._from_helper = False
        self._approved = False
        self._lock = threading.Lock()
        pool = options.concurrency + 2
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(IO_TIMEOUT, connect=CONNECT_TIMEOUT, pool=None),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            follow_redirects=True,
        )

    def close(self) -> None:
        self._client.close()

    # ---- the batch request -------------------------------------------------------------

    def batch(self, operation: Operation, refs: Sequence[ObjectRef]) -> list[PlannedObject]:
        body = {
            "operation": operation,
            "transfers": ["basic"],
            "objects": [{"oid": r.oid, "size": r.size} for r in refs],
            "hash_algo": "sha256",
        }
        url = f"{self._url}/objects/batch"
        headers = {"Accept": LFS_MEDIA_TYPE, "Content-Type": LFS_MEDIA_TYPE}
        while True:
            credential = self._credential
            auth = _auth(credential)
            try:
                resp = self._retrying(
                    lambda: self._checked(
                        self._client.post(url, json=body, headers=headers, auth=auth)  # noqa: B023
                    )
                )
            except ObjectFailed as exc:
                raise BatchFailed(str(exc)) from None
            if resp.status_code == 401:
                self._refresh_credential(credential, resp)
                continue
            if resp.status_code == 403:
                raise BatchFailed(
                    f"access denied ({_describe(resp)}); check your permissions on the remote",
                    auth=True,
                )
            if resp.status_code == 404:
                raise BatchFailed(
                    f"no Git LFS server answers at {self._url} ({_describe(resp)}); "
                    "set lfs.url or remote.<name>.lfsurl"
                )
            if not resp.is_success:
                raise BatchFailed(f"batch request refused: {_describe(resp)}")
            self._approve(credential)
            return self._parse_batch(resp, refs)

    def _refresh_credential(
        self, used: credentials.Credential | None, resp: httpx.Response
    ) -> None:
        with self._lock:
            if self._credential is not used:
                return  # another thread already refreshed it
            if used is not None:
                if self._from_helper:
                    credentials.reject(self._repo, used)
                raise BatchFailed(
                    f"the server refused the credentials for {self._url} ({_describe(resp)}); "
                    "fix them in your git credential helper and try again",
                    auth=True,
                )
            filled = credentials.fill(self._repo, self._url)
            if filled is None:
                raise BatchFailed(
                    f"the server asks for credentials ({_describe(resp)}) and "
                    "`git credential fill` gave none; configure a credential helper",
                    auth=True,
                )
            self._credential, self._from_helper = filled, True

    def _approve(self, credential: credentials.Credential | None) -> None:
        with self._lock:
            if credential is not None and self._from_helper and not self._approved:
                credentials.approve(self._repo, credential)
                self._approved = True

    def _parse_batch(self, resp: httpx.Response, refs: Sequence[ObjectRef]) -> list[PlannedObject]:
        try:
            doc = resp.json()
            transfer = doc.get("transfer", "basic")
            answers = {(o["oid"], int(o["size"])): o for o in doc["objects"]}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BatchFailed(
                f"the batch response from {self._url} is not valid Git LFS JSON"
            ) from None
        if transfer != "basic":
            raise BatchFailed(
                f"the server chose transfer adapter {transfer!r}; only basic is spoken"
            )
        plan = []
        for ref in refs:
            answer = answers.get((ref.oid, ref.size))
            if answer is None:
                plan.append(PlannedObject(ref, error="the server's batch response left it out"))
                continue
            error = answer.get("error")
            if error:
                code = error.get("code", "?") if isinstance(error, dict) else "?"
                message = error.get("message", "") if isinstance(error, dict) else str(error)
                plan.append(
                    PlannedObject(ref, error=f"server error {code}: {message}".rstrip(": "))
                )
                continue
            actions = {
                name: Action(
                    str(a["href"]), {str(k): str(v) for k, v in a.get("header", {}).items()}
                )
                for name, a in (answer.get("actions") or {}).items()
                if isinstance(a, dict) and "href" in a
            }
            plan.append(
                PlannedObject(ref, actions, authenticated=bool(answer.get("authenticated")))
            )
        return plan

    # ---- moving one object -------------------------------------------------------------

    def upload(self, obj: PlannedObject, store: ObjectStore) -> int:
        action = obj.actions.get("upload")
        if action is None:
            return 0  # the server has it already
        path = store.locate(obj.ref.oid)
        if not store.has(obj.ref):
            raise ObjectFailed(
                f"not in the local store {store.objects_dir}; fetch it from a remote that has it"
            )
        headers = {
            **self._action_headers(action, obj),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(obj.ref.size),
        }
        self._retrying(
            lambda: self._expect_success(
                self._client.put(action.href, content=read_chunks(path), headers=headers),
                "upload",
            )
        )
        verify = obj.actions.get("verify")
        if verify is not None:
            headers = {
                **self._action_headers(verify, obj),
                "Accept": LFS_MEDIA_TYPE,
                "Content-Type": LFS_MEDIA_TYPE,
            }
            body = {"oid": obj.ref.oid, "size": obj.ref.size}
            self._retrying(
                lambda: self._expect_success(
                    self._client.post(verify.href, json=body, headers=headers), "verify"
                )
            )
        return obj.ref.size

    def download(self, obj: PlannedObject, store: ObjectStore) -> int:
        action = obj.actions.get("download")
        if action is None:
            raise ObjectFailed("the server gave no download action")
        headers = self._action_headers(action, obj)

        def attempt() -> int:
            with self._client.stream("GET", action.href, headers=headers) as resp:
                if resp.status_code in RETRY_STATUSES:
                    resp.read()
                    raise _Retryable(_describe(resp), _retry_after(resp))
                if not resp.is_success:
                    resp.read()
                    raise ObjectFailed(f"download refused: {_describe(resp)}")
                return write_verified(store, obj.ref, resp.iter_bytes(CHUNK_BYTES))

        return self._retrying(attempt)

    def _action_headers(self, action: Action, obj: PlannedObject) -> dict[str, str]:
        headers = dict(action.header)
        credential = self._credential
        if (
            credential is not None
            and not obj.authenticated
            and not any(k.lower() == "authorization" for k in headers)
            and self._same_origin(action.href)
        ):
            # Git LFS sends the endpoint's credentials to actions on the same host that
            # carry no authorisation of their own.
            token = f"{credential.username}:{credential.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        return headers

    def _same_origin(self, href: str) -> bool:
        parts = urlsplit(href)
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return (parts.scheme, netloc) == self._origin

    @staticmethod
    def _expect_success(resp: httpx.Response, what: str) -> httpx.Response:
        if resp.status_code in RETRY_STATUSES:
            raise _Retryable(_describe(resp), _retry_after(resp))
        if not resp.is_success:
            raise ObjectFailed(f"{what} refused: {_describe(resp)}")
        return resp

    @staticmethod
    def _checked(resp: httpx.Response) -> httpx.Response:
        if resp.status_code in RETRY_STATUSES:
            raise _Retryable(_describe(resp), _retry_after(resp))
        return resp

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`, again after a back-off on a dropped connection, 5xx or 429.

        Raises:
            ObjectFailed: still failing after `max_retries` further attempts.
        """
        tries = self._options.max_retries + 1
        for number in range(1, tries + 1):
            try:
                return attempt()
            except _Retryable as exc:
                reason, wait = str(exc), exc.retry_after
            except httpx.TransportError as exc:
                reason, wait = _transport_error(exc), None
            if number == tries:
                plural = "s" if tries > 1 else ""
                raise ObjectFailed(f"{reason} ({tries} attempt{plural})")
            delay = self._options.retry_delay(number)
            time.sleep(min(wait, self._options.max_retry_delay) if wait is not None else delay)
        raise AssertionError("unreachable")


def _auth(credential: credentials.Credential | None) -> Any:
    return (credential.username, credential.password) if credential is not None else None
