"""The rules `git theta check` enforces, from the command line and a checked-in file.

The file is `.git-theta.toml` (table `[check]`) at the work tree root, or else
`pyproject.toml` (table `[tool.git-theta.check]`):

    [check]
    frozen = ["embed_tokens.*", "layers.0.*"]   # glob patterns that must not change at all
    max-relative-change = 0.05                  # ||new - old|| / ||old|| per parameter
    no-nan = true                               # no NaN or Inf in added or modified tensors
    allow-shape-change = false                  # a parameter may not change shape (default)

Command-line options add frozen patterns and override the other values. An error in the file
names it and its line.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from git_theta.errors import ConfigError

__all__ = ["RULES_FILE", "PYPROJECT", "Rules", "load_rules"]

RULES_FILE = ".git-theta.toml"
PYPROJECT = "pyproject.toml"
_TABLES = {RULES_FILE: ("check",), PYPROJECT: ("tool", "git-theta", "check")}
_KEYS = ("frozen", "max-relative-change", "no-nan", "allow-shape-change")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


@dataclass(frozen=True)
class Rules:
    """What `check` requires of every changed checkpoint.

    Attributes:
        frozen: glob patterns; a parameter matching one may not be added, removed or modified.
        max_relative_change: the largest ||new - old|| / ||old|| allowed (None: no limit).
        no_nan: added and modified floating-point tensors may hold no NaN or Inf.
        allow_shape_change: whether a parameter may change shape.
        source: the file the rules came from, if any.
    """

    frozen: tuple[str, ...] = ()
    max_relative_change: float | None = None
    no_nan: bool = False
    allow_shape_change: bool = False
    source: str | None = None

    def merged(
        self,
        *,
        frozen: tuple[str, ...] = (),
        max_relative_change: float | None = None,
        no_nan: bool | None = None,
        allow_shape_change: bool | None = None,
    ) -> Rules:
        """These rules with command-line values on top (None: keep the file's value)."""
        return replace(
            self,
            frozen=tuple(dict.fromkeys(self.frozen + frozen)),
            max_relative_change=(
                self.max_relative_change if max_relative_change is None else max_relative_change
            ),
            no_nan=self.no_nan if no_nan is None else no_nan,
            allow_shape_change=(
                self.allow_shape_change if allow_shape_change is None else allow_shape_change
            ),
        )


def _toml() -> Any:
    try:
        return importlib.import_module("tomllib")
    except ModuleNotFoundError:  # Python 3.10
        try:
            return importlib.import_module("tomli")
        except ModuleNotFoundError:
            raise ConfigError(
                "reading check rules from a file needs Python 3.11+ or the `tomli` package"
            ) from None


def _line_of(text: str, table: tuple[str, ...], key: str | None) -> int:
    """The line (1-based) of `key` inside `table`, else of the table's header, else 1.

    tomllib reports positions only for syntax errors; a key of the wrong type is found here.
    """
    wanted = ".".join(table)
    current = ""  # top-level keys, before any table header
    header_line = None
    key_pattern = re.compile(rf"""^\s*["']?{re.escape(key or "")}["']?\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        match = _HEADER.match(line)
        if match:
            current = re.sub(r"""\s*\.\s*|["']""", lambda m: "." if "." in m[0] else "", match[1])
            if current == wanted and header_line is None:
                header_line = number
            continue
        if key and current == wanted and key_pattern.match(line):
            return number
    return header_line or 1


def _table(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def load_rules(root: Path) -> Rules:
    """The rules in `.git-theta.toml`, else `pyproject.toml`, at `root` (none: default rules).

    Raises:
        ConfigError: the file is not valid TOML, or a key is unknown or of the wrong type;
            the message starts with `FILE:LINE:`.
    """
    for name in (RULES_FILE, PYPROJECT):
        file = root / name
        if file.is_file():
            rules = _parse(file.read_text(encoding="utf-8"), name)
            if rules is not None or name == RULES_FILE:
                return rules or Rules(source=name)
    return Rules()


def _refuse_strays(doc: Mapping[str, Any], text: str, name: str) -> None:
    """A key or table beside the rules table is a mistake (`frozen = [...]` above `[check]`,
    a misspelled `[chek]`): ignoring it would let `check` pass rules the user thinks hold.
    In pyproject.toml only `[tool.git-theta]` is ours."""
    owner = _TABLES[name][:-1]
    node = _table(doc, owner) if owner else doc
    if not isinstance(node, Mapping):
        return
    wanted = _TABLES[name][-1]
    for key, value in node.items():
        if key == wanted:
            continue
        kind = "table" if isinstance(value, Mapping) else "key"
        shown = ".".join((*owner, key))
        where = f"[{shown}]" if kind == "table" else repr(key)
        place = f"in [{'.'.join(owner)}]" if owner else "at the top level"
        line = (
            _line_of(text, (*owner, key), None) if kind == "table" else _line_of(text, owner, key)
        )
        rules = ".".join(_TABLES[name])
        raise ConfigError(
            f"{name}:{line}: unknown {kind} {where} {place}; rules go in [{rules}] "
            f"(valid keys: {', '.join(_KEYS)})"
        )


def _parse(text: str, name: str) -> Rules | None:
    tomllib = _toml()
    table_path = _TABLES[name]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        line = position[1] if position else "1"
        detail = _TOML_POSITION.sub("", message)
        column = f" (column {position[2]})" if position else ""
        raise ConfigError(f"{name}:{line}: invalid TOML: {detail}{column}") from None
    _refuse_strays(doc, text, name)
    table = _table(doc, table_path)
    if table is None:
        return None
    where = f"[{'.'.join(table_path)}]"

    def fail(key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{name}:{_line_of(text, table_path, key)}: {message}")

    if not isinstance(table, Mapping):
        raise fail(None, f"{where} must be a table")
    for key in table:
        if key not in _KEYS:
            raise fail(key, f"unknown key {key!r} in {where}; valid keys: {', '.join(_KEYS)}")
    frozen = table.get("frozen", [])
    if not isinstance(frozen, list) or not all(isinstance(p, str) for p in frozen):
        raise fail("frozen", "frozen must be a list of glob patterns (strings)")
    limit = table.get("max-relative-change")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0
    ):
        raise fail("max-relative-change", "max-relative-change must be a number >= 0")
    for key in ("no-nan", "allow-shape-change"):
        if not isinstance(table.get(key, False), bool):
            raise fail(key, f"{key} must be true or false")
    return Rules(
        frozen=tuple(frozen),
        max_relative_change=None if limit is None else float(limit),
        no_nan=table.get("no-nan", False),
        allow_shape_change=table.get("allow-shape-change", False),
        source=name,
    )
