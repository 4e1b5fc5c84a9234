"""What of a URL or a server's words may appear in a message: one line, no credentials.

A server's error message is shown to the user, so it is cut to one short line of printable
characters (a hostile server could otherwise draw on the terminal or fake further lines), and
any credential of ours it echoes is masked. URLs lose their userinfo, query and fragment:
a pre-signed storage URL carries its signature in the query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["clean_text", "shown_value", "strip_url"]

# Characters of a server's message that reach the user; the rest is cut with "...".
MESSAGE_CHARS = 200
# userinfo in anything that looks like a URL: `//user:password@`
_USERINFO = re.compile(r"//[^/\s@]*@")
# Terminal escape sequences (colours, cursor moves): dropped whole, not just their ESC.
_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)?")
# Control characters, line separators, and lone surrogates (which no terminal can encode).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")


def strip_url(url: str, *, path: bool = True) -> str:
    """`scheme://host[:port]/path` of `url` (without the path unless `path`): no userinfo,
    query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}{port}" + (parts.path if path else "")
    return clean_text(shown, limit=MESSAGE_CHARS)


def clean_text(text: str, secrets: Iterable[str] = (), *, limit: int = MESSAGE_CHARS) -> str:
    """`text` as one line of at most `limit` characters, with every string of `secrets` and
    the userinfo of any URL in it replaced by `***`."""
    for secret in secrets:
        if len(secret) >= 4:  # masking "a" would garble the message and hide nothing
            text = text.replace(secret, "***")
    text = _USERINFO.sub("//***@", text)
    text = " ".join(_UNPRINTABLE.sub(" ", _ESCAPE.sub("", text)).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def shown_value(value: object, limit: int = 40) -> str:
    """A value a server sent where another was expected, short and on one line."""
    return clean_text(repr(value), limit=limit)
