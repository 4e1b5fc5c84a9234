"""The Git LFS batch API over HTTP(S), with the basic transfer adapter.

One `Session` (one httpx client) per transport keeps connections alive across batches and
objects; the queue calls `upload`/`download` from several threads at once. A 5xx, 429, dropped
connection or stall is retried with exponential back-off within the operation's deadline; 401
asks `git credential fill` once, then rejects what the helper gave if the server refuses it too.

The server is untrusted: its batch response is validated (batch_response.py), a download is
refused when it declares another size than the object's and stopped the moment it runs past
it, and every request is bounded in redirects, body size and time (session.py, pace.py).

Specs: https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md and
https://github.com/git-lfs/git-lfs/blob/main/docs/api/basic-transfers.md
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore
from git_theta.transfer import credentials
from git_theta.transfer.base import (
    BatchFailed,
    ObjectFailed,
    Operation,
    PlannedObject,
    write_verified,
)
from git_theta.transfer.batch_response import MAX_BATCH_RESPONSE_BYTES, parse_batch
from git_theta.transfer.endpoint import Endpoint
from git_theta.transfer.options import TransferOptions
from git_theta.transfer.pace import Pace
from git_theta.transfer.session import (
    RETRY_STATUSES,
    UPLOAD_CHUNK_BYTES,
    Retryable,
    Session,
    content_length,
    origin_of,
)

__all__ = ["HttpTransport"]

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
# A verify call's answer carries nothing we use; more than this is not an answer.
MAX_VERIFY_RESPONSE_BYTES = 64 << 10

T = TypeVar("T")


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _basic(credential: credentials.Credential) -> str:
    token = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def _refuse_failed_batch(status: int, content: bytes, url: str) -> None:
    """BatchFailed for a batch answer other than a success (401 is handled before); `content`
    is then the error's description."""
    if 200 <= status < 300:
        return
    described = content.decode()
    if status == 403:
        raise BatchFailed(
            f"access denied ({described}); check your permissions on the remote", auth=True
        )
    if status == 404:
        raise BatchFailed(
            f"no Git LFS server answers at {url} ({described}); set lfs.url or remote.<name>.lfsurl"
        )
    raise BatchFailed(f"batch request refused: {described}")


class HttpTransport:
    """The basic transfer adapter against one LFS endpoint.

    Args:
        endpoint: an http(s) endpoint (`.../info/lfs`).
        repo: for `git credential`.
        options: concurrency (connection pool size), retry policy and bounds.
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
        self._origin = origin_of(self._url)
        self._session = Session(options, pool=options.concurrency + 2, client=client)
        self._credential: credentials.Credential | None = None
        if parts.password is not None:
            self._use(
                credentials.Credential(
                    self._url, unquote(parts.username or ""), unquote(parts.password)
                )
            )
        self._from_helper = False
        self._approved = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def _use(self, credential: credentials.Credential) -> None:
        self._credential = credential
        session = self._session
        session.secrets = session.secrets | {credential.password, _basic(credential).split()[1]}

    # ---- the batch request -------------------------------------------------------------

    def batch(self, operation: Operation, refs: Sequence[ObjectRef]) -> list[PlannedObject]:
        body = json.dumps(
            {
                "operation": operation,
                "transfers": ["basic"],
                "objects": [{"oid": r.oid, "size": r.size} for r in refs],
                "hash_algo": "sha256",
            }
        ).encode()
        url = f"{self._url}/objects/batch"
        pace = Pace(self._options, 0)
        session = self._session
        while True:
            credential = self._credential
            headers = {"Accept": LFS_MEDIA_TYPE, "Content-Type": LFS_MEDIA_TYPE}
            if credential is not None:
                headers["Authorization"] = _basic(credential)

            try:
                status, content = session.retrying(
                    lambda: self._post_batch(url, headers, body, pace),  # noqa: B023
                    pace,
                )
            except ObjectFailed as exc:
                raise BatchFailed(str(exc)) from None
            if status == 401:
                self._refresh_credential(credential, content.decode())
                continue
            _refuse_failed_batch(status, content, self._url)
            self._approve(credential)
            return parse_batch(content, operation, refs, self._url)

    def _post_batch(
        self, url: str, headers: dict[str, str], body: bytes, pace: Pace
    ) -> tuple[int, bytes]:
        """One attempt: the status and, for a success, the body (else the error's description)."""
        session = self._session
        with session.open("POST", url, headers=headers, body=body, pace=pace) as resp:
            if resp.status_code in RETRY_STATUSES:
                raise Retryable(session.describe(resp, pace), _retry_after(resp))
            if not resp.is_success:
                return resp.status_code, session.describe(resp, pace).encode()
            content = session.read(resp, MAX_BATCH_RESPONSE_BYTES, pace, "the batch response")
            return resp.status_code, content

    def _refresh_credential(self, used: credentials.Credential | None, described: str) -> None:
        with self._lock:
            if self._credential is not used:
                return  # another thread already refreshed it
            if used is not None:
                if self._from_helper:
                    credentials.reject(self._repo, used)
                raise BatchFailed(
                    f"the server refused the credentials for {self._url} ({described}); "
                    "fix them in your git credential helper and try again",
                    auth=True,
                )
            filled = credentials.fill(self._repo, self._url)
            if filled is None:
                raise BatchFailed(
                    f"the server asks for credentials ({described}) and "
                    "`git credential fill` gave none; configure a credential helper",
                    auth=True,
                )
            self._use(filled)
            self._from_helper = True

    def _approve(self, credential: credentials.Credential | None) -> None:
        with self._lock:
            if credential is not None and self._from_helper and not self._approved:
                credentials.approve(self._repo, credential)
                self._approved = True

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
            **self._action_headers(action.header, action.href, obj),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(obj.ref.size),
        }
        session = self._session
        pace = Pace(self._options, obj.ref.size)

        def send() -> None:
            body = lambda: _file_body(path, obj.ref.size, pace)  # noqa: E731
            with session.open("PUT", action.href, headers=headers, body=body, pace=pace) as resp:
                self._expect_success(resp, pace, "upload")

        self._at(action.href, lambda: session.retrying(send, pace))
        verify = obj.actions.get("verify")
        if verify is not None:
            headers = {
                **self._action_headers(verify.header, verify.href, obj),
                "Accept": LFS_MEDIA_TYPE,
                "Content-Type": LFS_MEDIA_TYPE,
            }
            body = json.dumps({"oid": obj.ref.oid, "size": obj.ref.size}).encode()
            check = Pace(self._options, 0)

            def confirm() -> None:
                with session.open("POST", verify.href, headers=headers, body=body, pace=check) as r:
                    self._expect_success(r, check, "verify")
                    session.read(r, MAX_VERIFY_RESPONSE_BYTES, check, "the verify response")

            self._at(verify.href, lambda: session.retrying(confirm, check))
        return obj.ref.size

    def download(self, obj: PlannedObject, store: ObjectStore) -> int:
        action = obj.actions.get("download")
        if action is None:
            raise ObjectFailed("the server gave no download action")
        headers = self._action_headers(action.header, action.href, obj)
        session = self._session
        ref = obj.ref
        pace = Pace(self._options, ref.size)

        def attempt() -> int:
            with session.open("GET", action.href, headers=headers, body=None, pace=pace) as resp:
                self._expect_success(resp, pace, "download")
                declared = content_length(resp)
                if declared is not None and declared != ref.size:
                    raise ObjectFailed(
                        f"the server announced {declared} bytes for an object of {ref.size}; "
                        "nothing was read"
                    )
                chunks = session.iter_body(resp, ref.size, pace, "the download")
                return write_verified(store, ref, chunks)

        return self._at(action.href, lambda: session.retrying(attempt, pace))

    def _at(self, href: str, run: Callable[[], T]) -> T:
        """`run()`, with the storage host named in its failure when it is not the endpoint's."""
        try:
            return run()
        except ObjectFailed as exc:
            origin = origin_of(href)
            if origin == self._origin:
                raise
            host = origin[1] + (f":{origin[2]}" if origin[2] not in (80, 443) else "")
            raise ObjectFailed(f"{exc} (at {host})") from None

    def _action_headers(
        self, given: Mapping[str, str], href: str, obj: PlannedObject
    ) -> dict[str, str]:
        headers = dict(given)
        credential = self._credential
        if (
            credential is not None
            and not obj.authenticated
            and not any(k.lower() == "authorization" for k in headers)
            and origin_of(href) == self._origin
        ):
            # Git LFS sends the endpoint's credentials to actions on the same host that
            # carry no authorisation of their own.
            headers["Authorization"] = _basic(credential)
        return headers

    def _expect_success(self, resp: httpx.Response, pace: Pace, what: str) -> None:
        if resp.status_code in RETRY_STATUSES:
            raise Retryable(self._session.describe(resp, pace), _retry_after(resp))
        if not resp.is_success:
            raise ObjectFailed(f"{what} refused: {self._session.describe(resp, pace)}")


def _file_body(path: Path, size: int, pace: Pace) -> Iterator[bytes]:
    """The object's bytes in socket-write pieces, counted against the pace; exactly `size`."""
    sent = 0
    with path.open("rb") as f:
        while chunk := f.read(UPLOAD_CHUNK_BYTES):
            sent += len(chunk)
            if sent > size:
                break
            yield chunk
            pace.advance(len(chunk))
    if sent != size:
        raise ObjectFailed(f"the object's file changed size while it was sent ({path})")
