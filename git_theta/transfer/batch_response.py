"""Reading a batch API response as untrusted input.

The response decides what we fetch and from where, so every field is checked before it is
used: each object's oid is 64 lowercase hex digits and one we asked for, its size is the size
we asked for, its actions are well formed (an absolute http(s) href, headers that are strings
and valid HTTP). A problem with one object fails that object; a response we cannot attribute
to our objects (not JSON, an oid we never asked for) fails the batch. Either way the reason is
one line naming the object and the server.

Spec: https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from git_theta.metadata import ObjectRef
from git_theta.transfer.base import Action, BatchFailed, Operation, PlannedObject
from git_theta.transfer.redact import clean_text, shown_value
from git_theta.transfer.session import http_url

__all__ = ["MAX_BATCH_RESPONSE_BYTES", "parse_batch"]

# A response for 100 objects with pre-signed URLs and headers is a few hundred KiB; anything
# far beyond that is not an answer to our request.
MAX_BATCH_RESPONSE_BYTES = 4 << 20
_OID = re.compile(r"[0-9a-f]{64}")
# RFC 9110 token: what an HTTP header name may be.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Control characters (tab aside) and anything outside ASCII are not sent in a header.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
ACTIONS: Mapping[Operation, tuple[str, ...]] = {
    "upload": ("upload", "verify"),
    "download": ("download",),
}


class _Malformed(Exception):
    """One object's answer is malformed; the message says how."""


def parse_batch(
    content: bytes, operation: Operation, refs: Sequence[ObjectRef], server: str
) -> list[PlannedObject]:
    """The plan for `refs` (in their order) from a batch response's body.

    Args:
        server: the endpoint, for messages.

    Raises:
        BatchFailed: the response is not a batch response, or names objects not asked for.
    """
    try:
        doc = json.loads(content)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise BatchFailed(f"the batch response from {server} is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        raise BatchFailed(f"the batch response from {server} has no list of objects")
    transfer = doc.get("transfer", "basic")
    if transfer not in ("basic", None):
        raise BatchFailed(
            f"the server chose transfer adapter {shown_value(transfer)}; only basic is spoken"
        )
    if doc.get("hash_algo", "sha256") not in ("sha256", None):
        raise BatchFailed(
            f"{server} answers with hash algorithm {shown_value(doc['hash_algo'])}, not sha256"
        )
    asked = {ref.oid: ref for ref in refs}
    plan: dict[str, PlannedObject] = {}
    for item in doc["objects"]:
        oid = item.get("oid") if isinstance(item, dict) else None
        if not isinstance(oid, str) or not _OID.fullmatch(oid):
            raise BatchFailed(
                f"the batch response from {server} names an invalid oid {shown_value(oid)}"
            )
        ref = asked.get(oid)
        if ref is None:
            raise BatchFailed(
                f"the batch response from {server} names object {oid[:12]}, not one asked for"
            )
        assert isinstance(item, dict)
        if oid in plan:
            plan[oid] = PlannedObject(ref, error="the server's batch response answers it twice")
            continue
        try:
            plan[oid] = _planned(item, ref, operation)
        except _Malformed as exc:
            plan[oid] = PlannedObject(ref, error=f"the server's batch response is malformed: {exc}")
    return [
        plan.get(ref.oid) or PlannedObject(ref, error="the server's batch response left it out")
        for ref in refs
    ]


def _planned(item: dict[str, Any], ref: ObjectRef, operation: Operation) -> PlannedObject:
    size = item.get("size")
    if type(size) is not int or size != ref.size:
        raise _Malformed(f"size {shown_value(size)} where {ref.size} was asked")
    error = item.get("error")
    if error is not None:
        return PlannedObject(ref, error=_server_error(error))
    actions = item.get("actions")
    if actions is None:
        actions = {}
    if not isinstance(actions, dict):
        raise _Malformed("its actions are not an object")
    authenticated = item.get("authenticated", False)
    planned = {name: _action(name, actions[name]) for name in ACTIONS[operation] if name in actions}
    return PlannedObject(ref, planned, authenticated=authenticated is True)


def _server_error(error: object) -> str:
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        code_text = str(code) if type(code) is int else "?"
        text = clean_text(message) if isinstance(message, str) else ""
        return f"server error {code_text}: {text}".rstrip(": ")
    return "server error (malformed)"


def _action(name: str, raw: object) -> Action:
    if not isinstance(raw, dict) or not isinstance(raw.get("href"), str):
        raise _Malformed(f"its {name} action has no href")
    href = raw["href"]
    try:
        http_url(href)
    except ValueError as exc:
        raise _Malformed(f"its {name} href {exc}") from None
    header = raw.get("header")
    if header is None:
        header = {}
    if not isinstance(header, dict) or not all(
        isinstance(k, str)
        and isinstance(v, str)
        and _HEADER_NAME.fullmatch(k)
        and _HEADER_VALUE.fullmatch(v)
        for k, v in header.items()
    ):
        raise _Malformed(f"its {name} action has headers that are not valid HTTP")
    return Action(href, dict(header))
