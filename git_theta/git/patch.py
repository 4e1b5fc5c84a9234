"""Find the checkpoint blocks in git's patch output, so they can be shown another way.

`git show` and `git log -p` print, for a path with `diff=theta`, the line diff of two
textconv texts (git_theta/diffing/listing.py): each version on its own, never how far a
parameter moved. But the block's `index OLD..NEW` line names both metadata blobs, and from
those the per-parameter diff can be computed. PatchScanner reads git's output a line at a
time, passes every other line through as it comes, holds each `diff --git` block until it
is complete, and asks a callback what to show instead of it.

A block is complete when its hunks have as many lines as their `@@ -a,b +c,d @@` headers
count; output that does not add up (`--word-diff`, a custom format that imitates a patch)
is passed through unchanged. Colors are ignored for parsing and kept in what passes through.
Unified diff format: https://git-scm.com/docs/git-diff#_generating_patch_text_with_p
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PatchBlock", "PatchScanner", "plain", "quote_path", "unquote_path"]

_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_HUNK = re.compile(rb"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_INDEX = re.compile(rb"index ([0-9a-f]{4,})\.\.([0-9a-f]{4,})(?: |$)")
# The extended header lines git may print between `diff --git` and the first hunk.
_HEADER = (
    b"old mode ",
    b"new mode ",
    b"deleted file mode ",
    b"new file mode ",
    b"similarity index ",
    b"dissimilarity index ",
    b"rename from ",
    b"rename to ",
    b"copy from ",
    b"copy to ",
    b"index ",
    b"--- ",
    b"+++ ",
)
_BINARY = b"Binary files "
_ESCAPES = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r"}


def plain(line: bytes) -> bytes:
    """A line of git's output without color codes and line end."""
    return _ANSI.sub(b"", line).rstrip(b"\r\n")


_QUOTES = {ord(v): k for k, v in _ESCAPES.items()} | {ord('"'): '"', ord("\\"): "\\"}


def quote_path(path: str, prefix: str = "") -> str:
    """`prefix + path` as git shows a path with `core.quotePath` on (its default): as is when
    every byte is printable ASCII, else in double quotes with C escapes and the other bytes in
    octal (`"a/mod\\351l.safetensors"`). `path` holds git's bytes as `surrogateescape` text.
    """
    raw = (prefix + path).encode("utf-8", "surrogateescape")
    if all(0x20 <= b < 0x7F and b not in (0x22, 0x5C) for b in raw):
        return prefix + path
    out = []
    for b in raw:
        if b in _QUOTES:
            out.append("\\" + _QUOTES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def unquote_path(text: str) -> str:
    """A path as git prints it in a patch: C-quoted when it has unusual bytes
    (`"a/caf\\303\\251"`), else as is."""
    if not (len(text) >= 2 and text[0] == text[-1] == '"'):
        return text
    out = bytearray()
    i, body = 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c != "\\" or i + 1 == len(body):
            out += c.encode("utf-8", "surrogateescape")
            i += 1
        elif body[i + 1] in "01234567":
            out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            out += _ESCAPES.get(body[i + 1], body[i + 1]).encode()
            i += 2
    return out.decode("utf-8", "surrogateescape")


@dataclass
class PatchBlock:
    """One `diff --git` block as git printed it.

    Attributes:
        header: the raw lines before the first hunk or `---` line (`diff --git`, mode and
            rename lines, `index`).
        body: the raw `---`/`+++` and hunk lines, or the `Binary files` line.
        old_path, new_path: the paths after `--- `/`+++ ` with their two-character
            prefix (or none) as printed; None for /dev/null or when not printed.
        old_blob, new_blob: the (abbreviated) blob ids of the `index` line; None for a side
            that does not exist (all zeros) or when there is no `index` line.
        colored: git's output had color codes.
    """

    header: list[bytes] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    old_path: str | None = None
    new_path: str | None = None
    old_blob: str | None = None
    new_blob: str | None = None
    colored: bool = False

    def lines(self) -> list[bytes]:
        return [*self.header, *self.body]

    def path(self, *, prefixed: bool = True) -> str | None:
        """The path this block is about (the new one after a rename), without the `a/` or
        `b/` git prints before it unless `prefixed` is False (diff.noprefix)."""
        name = self.new_path or self.old_path or self._diff_line_path()
        if name is None:
            return None
        if prefixed:
            name = name[2:] if len(name) > 2 and name[1] == "/" else None
        return name or None

    def _diff_line_path(self) -> str | None:
        """From `diff --git a/P b/P`, the only line a binary or header-only block has a path
        on. A quoted or renamed path cannot be split off this line unambiguously: such a
        block is left as git printed it unless it has `---`/`+++` lines."""
        rest = plain(self.header[0])[len(b"diff --git ") :].decode("utf-8", "surrogateescape")
        half = (len(rest) - 1) // 2
        first, second = rest[:half], rest[half + 1 :]
        if rest[half : half + 1] != " " or first[2:] != second[2:] or rest.startswith('"'):
            return None
        return second

    def add_header(self, raw: bytes, text: bytes) -> None:
        self.header.append(raw)
        self.colored = self.colored or b"\x1b[" in raw
        index = _INDEX.match(text)
        if index:
            self.old_blob, self.new_blob = (_blob(x) for x in index.groups())

    def add_file_line(self, raw: bytes, text: bytes) -> None:
        """A `--- a/path` or `+++ b/path` line."""
        self.body.append(raw)
        name = text[4:].decode("utf-8", "surrogateescape")
        path = None if name == "/dev/null" else unquote_path(name)
        if text.startswith(b"---"):
            self.old_path = path
        else:
            self.new_path = path


def _blob(hexid: bytes) -> str | None:
    return None if not hexid.strip(b"0") else hexid.decode()


# What to show for a complete block: lines, or None to show it as git printed it.
Rewrite = Callable[[PatchBlock], "list[bytes] | None"]


class PatchScanner:
    """Git's output in, the lines to show out; see the module doc.

    feed() takes one raw line (with its line end) and returns what can be shown now; close()
    returns what is still held at the end of the output.
    """

    def __init__(self, rewrite: Rewrite) -> None:
        self._rewrite = rewrite
        self._block: PatchBlock | None = None
        # Lines a hunk still owes: old side, new side; None before the first hunk.
        self._left: tuple[int, int] | None = None

    def feed(self, raw: bytes) -> list[bytes]:
        text = plain(raw)
        if self._block is None:
            return self._start(raw, text)
        if self._left is None:
            return self._in_header(raw, text)
        return self._in_hunk(raw, text)

    def close(self) -> list[bytes]:
        if self._block is None:
            return []
        complete = self._left in (None, (0, 0))
        return self._finish(complete)

    # ---- states ------------------------------------------------------------------------

    def _start(self, raw: bytes, text: bytes) -> list[bytes]:
        if not text.startswith(b"diff --git "):
            return [raw]
        self._block = PatchBlock()
        self._block.add_header(raw, text)
        return []

    def _in_header(self, raw: bytes, text: bytes) -> list[bytes]:
        block = self._block
        assert block is not None
        if text.startswith((b"--- ", b"+++ ")):
            block.add_file_line(raw, text)
        elif text.startswith(_HEADER) and not block.body:
            block.add_header(raw, text)
        elif text.startswith(_BINARY):
            block.body.append(raw)
            return self._finish(True)
        elif text.startswith(b"@@"):
            return self._hunk_header(raw, text)
        else:  # a block without hunks (a mode change, a pure rename): over
            return self._finish(True) + self.feed(raw)
        return []

    def _hunk_header(self, raw: bytes, text: bytes) -> list[bytes]:
        found = _HUNK.match(text)
        if found is None:
            return self._finish(False) + [raw]
        old, new = (1 if n is None else int(n) for n in found.groups())
        assert self._block is not None
        self._block.body.append(raw)
        self._left = (old, new)
        return []

    def _in_hunk(self, raw: bytes, text: bytes) -> list[bytes]:
        assert self._block is not None and self._left is not None
        old, new = self._left
        if old == new == 0:
            if text.startswith(b"\\"):  # `\ No newline at end of file` after the last line
                self._block.body.append(raw)
                return []
            if text.startswith(b"@@"):
                return self._hunk_header(raw, text)
            return self._finish(True) + self.feed(raw)
        mark = text[:1]
        if mark == b" " and old and new:
            self._left = (old - 1, new - 1)
        elif mark == b"-" and old:
            self._left = (old - 1, new)
        elif mark == b"+" and new:
            self._left = (old, new - 1)
        elif mark != b"\\":  # not a unified hunk line: show the block as it came
            return self._finish(False) + self.feed(raw)
        self._block.body.append(raw)
        return []

    def _finish(self, complete: bool) -> list[bytes]:
        block, self._block, self._left = self._block, None, None
        assert block is not None
        shown = self._rewrite(block) if complete else None
        return block.lines() if shown is None else shown
