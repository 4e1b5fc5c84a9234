"""Does a `.gitattributes` pattern match a path? Git's own rules (gitattributes(5), which
defers to gitignore(5), and wildmatch.c with WM_PATHNAME), for `git theta migrate`, which
decides per path of every historical tree without asking git once per path.

- A pattern without a slash matches the file name at any depth; with one (a leading slash
  only anchors it) it matches the whole path from the root.
- `*`, `?` and `[...]` never match a slash. `**` is special only as a whole path component:
  `**/x` (x at any depth), `a/**/b` (zero or more directories between), `a/**` (everything
  inside a).
- Brackets take ranges, `!` or `^` to negate, backslash escapes and POSIX classes: Git LFS
  writes a space in a tracked pattern as `[[:space:]]`.

A test checks these against `git check-attr` itself (tests/unit/test_wildmatch.py).
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["attribute_pattern_matches"]

_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "\\x21-\\x7e",
    "lower": "a-z",
    "print": "\\x20-\\x7e",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def _bracket(pattern: str, i: int) -> tuple[str, int] | None:
    """The regex of the bracket expression opening at `pattern[i]` and the index after it;
    None when it is not closed (then `[` is a literal)."""
    j, n = i + 1, len(pattern)
    negate = j < n and pattern[j] in "!^"
    j += negate
    items: list[str] = []
    first = True
    while j < n and (pattern[j] != "]" or first):
        first = False
        if pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            if end != -1 and pattern[j + 2 : end] in _CLASSES:
                items.append(_CLASSES[pattern[j + 2 : end]])
                j = end + 2
                continue
        low, j = _bracket_char(pattern, j)
        if j + 1 < n and pattern[j] == "-" and pattern[j + 1] != "]":
            high, j = _bracket_char(pattern, j + 1)
            items.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            items.append(re.escape(low))
    if j >= n:
        return None
    body = "".join(items)
    return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), j + 1


def _bracket_char(pattern: str, j: int) -> tuple[str, int]:
    if pattern[j] == "\\" and j + 1 < len(pattern):
        return pattern[j + 1], j + 2
    return pattern[j], j + 1


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            whole = (
                j - i == 2 and (i == 0 or pattern[i - 1] == "/") and (j == n or pattern[j] == "/")
            )
            if whole and j == n:
                out.append(".*")
            elif whole:
                out.append("(?:.*/)?")
                j += 1  # the slash is part of `**/`
            else:
                out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (found := _bracket(pattern, i)) is not None:
            out.append(found[0])
            i = found[1]
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> tuple[re.Pattern[str], bool]:
    basename = "/" not in pattern
    return re.compile(_translate(pattern.lstrip("/")), re.DOTALL), basename


def attribute_pattern_matches(pattern: str, path: str) -> bool:
    """Whether the `.gitattributes` `pattern` (unquoted) applies to `path` (from the root)."""
    regex, basename = _compiled(pattern)
    return regex.fullmatch(path.rpartition("/")[2] if basename else path) is not None
