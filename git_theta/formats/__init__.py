"""Checkpoint formats: a literal registry, extended through the `git_theta.formats` entry points.

Built-in formats are listed here by name; third-party ones are loaded on first lookup. A name
registered twice is an error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from git_theta.errors import ConfigError
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec

__all__ = ["Format", "Split", "TensorSource", "TensorSpec", "all_formats", "get_format"]

ENTRY_POINT_GROUP = "git_theta.formats"


def _safetensors() -> Format:
    from git_theta.formats.safetensors import SafetensorsFormat

    return SafetensorsFormat()


def _pytorch() -> Format:
    from git_theta.formats.pytorch import PyTorchFormat

    return PyTorchFormat()


def _npz() -> Format:
    from git_theta.formats.npz import NpzFormat

    return NpzFormat()


# Sniffing order: the streaming format first, so a safetensors file is never spooled to disk.
BUILTIN: dict[str, Callable[[], Format]] = {
    "safetensors": _safetensors,
    "pytorch": _pytorch,
    "npz": _npz,
}

_loaded: dict[str, Format] | None = None


def all_formats() -> dict[str, Format]:
    """Every format, built-ins first, then entry points (loaded once)."""
    global _loaded
    if _loaded is None:
        table = {name: factory() for name, factory in BUILTIN.items()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in table:
                raise ConfigError(
                    f"format {ep.name!r} from {ep.value} is already registered; rename the plugin"
                )
            fmt = ep.load()()
            if not isinstance(fmt, Format):
                raise ConfigError(f"entry point {ep.value} does not make a git_theta Format")
            table[ep.name] = fmt
        _loaded = table
    return _loaded


def get_format(name: str) -> Format:
    """The format registered as `name`; an unknown name lists the valid ones."""
    table = all_formats()
    try:
        return table[name]
    except KeyError:
        raise ConfigError(
            f"unknown checkpoint format {name!r}; known formats: {', '.join(sorted(table))}"
        ) from None
