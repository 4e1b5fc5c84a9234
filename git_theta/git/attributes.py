"""Reading and editing `.gitattributes` lines for tracked checkpoints.

Edits touch only lines that are exactly ours; every other line, comment and blank line is
kept byte for byte. Patterns are written relative to the repository root, as git-lfs does.
Spec: https://git-scm.com/docs/gitattributes
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from git_theta.atomic import write_bytes
from git_theta.git.patch import unquote_path

__all__ = [
    "DRIVER_ATTRIBUTES",
    "THETA_ATTRIBUTES",
    "add_patterns",
    "foreign_driver",
    "line_attributes",
    "remove_foreign",
    "remove_patterns",
    "split_pattern",
    "tracked_patterns",
]

THETA_ATTRIBUTES = "filter=theta merge=theta diff=theta -text"
# The attributes that name a driver; a path has one of each, so tracking a path that already
# names another (filter=lfs, merge=union, diff=lfs, ...) takes it away from that driver.
DRIVER_ATTRIBUTES = ("filter", "merge", "diff")
THETA = "theta"
_NEEDS_QUOTES = re.compile(r'[\s"\\]')


def quote_pattern(pattern: str) -> str:
    if not _NEEDS_QUOTES.search(pattern):
        return pattern
    escaped = pattern.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def split_pattern(line: str) -> tuple[str, str, list[str]] | None:
    """(pattern, the pattern as the line writes it, attributes) of one line; None for
    blanks, comments and macros. A pattern in double quotes is C-unquoted, as git reads it
    (`"dir \\303\\251/*.bin"` is `dir é/*.bin`)."""
    text = line.strip()
    if not text or text.startswith("#") or text.startswith("[attr]"):
        return None
    if text.startswith('"'):
        match = re.match(r'"(?:[^"\\]|\\.)*"', text)
        if not match:
            return None
        written = match.group(0)
        pattern = unquote_path(written)
        rest = text[match.end() :]
    else:
        written = re.split(r"\s", text, maxsplit=1)[0]
        pattern, rest = written, text[len(written) :]
    return pattern, written, rest.split()


def _split_line(line: str) -> tuple[str, list[str]] | None:
    """(pattern, attributes) of a line, or None for blanks, comments and macros."""
    parsed = split_pattern(line)
    return (parsed[0], parsed[2]) if parsed else None


def _is_ours(attrs: list[str]) -> bool:
    return "filter=theta" in attrs


def line_attributes(line: str) -> list[str]:
    """The attribute settings of one `.gitattributes` line; [] for blanks, comments, macros."""
    parsed = _split_line(line)
    return parsed[1] if parsed else []


def foreign_driver(values: Mapping[str, str | None]) -> str | None:
    """The first `attr=driver` among DRIVER_ATTRIBUTES naming a driver other than ours.

    `values` maps attribute names to driver names (None: unspecified, unset or just set).
    """
    for name in DRIVER_ATTRIBUTES:
        value = values.get(name)
        if value is not None and value != THETA:
            return f"{name}={value}"
    return None


def _settings(attrs: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for attr in attrs:
        name, eq, value = attr.partition("=")
        out[name] = value if eq else None
    return out


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _write(path: Path, lines: list[str]) -> None:
    # An existing file keeps its mode; a new one is readable by all, as git would make it.
    write_bytes(path, "".join(lines).encode("utf-8"), keep_mode=True, mode=0o644)


def tracked_patterns(attributes_file: Path) -> list[str]:
    """Patterns that a `.gitattributes` file sends through the theta filter."""
    out = []
    for line in _read(attributes_file):
        parsed = _split_line(line)
        if parsed and _is_ours(parsed[1]):
            out.append(parsed[0])
    return out


def add_patterns(attributes_file: Path, patterns: list[str]) -> list[str]:
    """Append a line for each pattern not yet tracked; returns the patterns added."""
    lines = _read(attributes_file)
    present = set(tracked_patterns(attributes_file))
    added = [p for p in dict.fromkeys(patterns) if p not in present]
    if not added:
        return []
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines.extend(f"{quote_pattern(p)} {THETA_ATTRIBUTES}\n" for p in added)
    _write(attributes_file, lines)
    return added


def remove_foreign(attributes_file: Path, pattern: str) -> list[str]:
    """Drop the lines for exactly `pattern` that name another driver (what `track --force`
    takes over); returns those lines as they were."""
    kept, removed = [], []
    for line in _read(attributes_file):
        parsed = _split_line(line)
        if parsed and parsed[0] == pattern and foreign_driver(_settings(parsed[1])):
            removed.append(line.rstrip("\r\n"))
            continue
        kept.append(line)
    if removed:
        _write(attributes_file, kept)
    return removed


def remove_patterns(attributes_file: Path, patterns: list[str]) -> list[str]:
    """Drop our lines for these patterns; returns the patterns removed."""
    wanted = set(patterns)
    kept, removed = [], []
    for line in _read(attributes_file):
        parsed = _split_line(line)
        if parsed and parsed[0] in wanted and _is_ours(parsed[1]):
            removed.append(parsed[0])
            continue
        kept.append(line)
    if removed:
        _write(attributes_file, kept)
    return removed
