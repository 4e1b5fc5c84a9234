"""Checkpoint formats: a literal registry, extended through the `git_theta.formats` entry points.

Built-in formats are listed here by name; third-party ones are loaded on first lookup. A name
registered twice is an error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points

from git_theta.errors import ConfigError
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec

__all__ = [
    "Format",
    "Split",
    "TensorSource",
    "TensorSpec",
    "all_formats",
    "get_format",
    "iter_formats",
]

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

_instances: dict[str, Format] = {}
_plugins: dict[str, Format] | None = None


def _builtin(name: str) -> Format:
    # Instantiated on first use: sniffing a safetensors file must not import numpy or torch.
    if name not in _instances:
        _instances[name] = BUILTIN[name]()
    return _instances[name]


def _load_plugins() -> dict[str, Format]:
    global _plugins
    if _plugins is None:
        table: dict[str, Format] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in BUILTIN or ep.name in table:
                raise ConfigError(
                    f"format {ep.name!r} from {ep.value} is already registered; rename the plugin"
                )
            fmt = ep.load()()
            if not isinstance(fmt, Format):
                raise ConfigError(f"entry point {ep.value} does not make a git_theta Format")
            table[ep.name] = fmt
        _plugins = table
    return _plugins


def iter_formats() -> Iterator[Format]:
    """Formats in sniffing order, each made only when reached: built-ins, then plugins."""
    for name in BUILTIN:
        yield _builtin(name)
    yield from _load_plugins().values()


def all_formats() -> dict[str, Format]:
    """Every format by name, built-ins first, then entry points."""
    return {fmt.name: fmt for fmt in iter_formats()}


def get_format(name: str) -> Format:
    """The format registered as `name`; an unknown name lists the valid ones."""
    if name in BUILTIN:
        return _builtin(name)
    plugins = _load_plugins()
    if name in plugins:
        return plugins[name]
    known = sorted([*BUILTIN, *plugins])
    raise ConfigError(f"unknown checkpoint format {name!r}; known formats: {', '.join(known)}")
