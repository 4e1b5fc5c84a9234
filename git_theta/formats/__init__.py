"""Checkpoint formats: a literal registry, extended through the `git_theta.formats` entry points.

Built-in formats are listed here by name; third-party ones are loaded on first lookup. A name
registered twice is an error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

from git_theta.errors import ConfigError, UnknownFormatError
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec
from git_theta.registry import Registry

__all__ = [
    "Format",
    "Split",
    "TensorSource",
    "TensorSpec",
    "all_formats",
    "choose_format",
    "get_format",
    "iter_formats",
    "sniff_format",
    "unknown_format",
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


def _flax() -> Format:
    from git_theta.formats.flax import FlaxFormat

    return FlaxFormat()


# Sniffing order: the streaming format first, so a safetensors file is never spooled to disk.
BUILTIN: dict[str, Callable[[], Format]] = {
    "safetensors": _safetensors,
    "pytorch": _pytorch,
    "npz": _npz,
    "flax": _flax,
}

_REGISTRY: Registry[Format] = Registry("format", ENTRY_POINT_GROUP, Format, BUILTIN)


def iter_formats() -> Iterator[Format]:
    """Formats in sniffing order, each made only when reached: built-ins, then plugins."""
    yield from _REGISTRY


def all_formats() -> dict[str, Format]:
    """Every format by name, built-ins first, then entry points."""
    return dict(_REGISTRY.items())


def sniff_format(head: bytes, file: BinaryIO | None) -> Format | None:
    """The first format whose sniff accepts the content, or None.

    Args:
        head: the content's first bytes.
        file: the whole content, seekable; None when only `head` is at hand (a stream), in
            which case only streaming formats are asked. It is left at offset 0.
    """
    for fmt in iter_formats():
        if file is None:
            if fmt.streams and fmt.sniff(head, None):
                return fmt
            continue
        file.seek(0)
        accepted = fmt.sniff(head, file)
        file.seek(0)
        if accepted:
            return fmt
    return None


def choose_format(
    head: bytes, *, override: str | None, seekable: Callable[[], BinaryIO], source: str
) -> Format:
    """The format of a checkpoint: the one `override` names (the `theta-format` attribute or
    `theta.format`), else the first streaming format whose sniff accepts `head`, else the first
    format whose sniff accepts the whole content, which `seekable()` gives (called only then:
    a streamed checkpoint is spooled for it). The clean filter and the diff both choose here.

    Raises:
        ConfigError: `override` names no format.
        UnknownFormatError: no format accepts the content.
    """
    if override:
        return get_format(override)
    found = sniff_format(head, None) or sniff_format(head, seekable())
    if found is None:
        raise unknown_format(source, head)
    return found


def unknown_format(source: str, head: bytes = b"") -> UnknownFormatError:
    """The error for content that no format accepts (`head`: its first bytes)."""
    if head.startswith(b"PK\x03\x04"):
        # A .pt or .npz cut short: the zip directory at its end, which says which, is gone.
        return UnknownFormatError(
            f"{source}: a zip archive that cannot be read (truncated or corrupt), so neither "
            "a PyTorch checkpoint nor an .npz git-theta can read"
        )
    names = ", ".join(_REGISTRY.names())
    return UnknownFormatError(
        f"{source}: not a checkpoint format git-theta reads (tried {names}); "
        "name one with the theta-format=NAME attribute in .gitattributes"
    )


def get_format(name: str) -> Format:
    """The format registered as `name`; an unknown name lists the valid ones."""
    fmt = _REGISTRY.find(name)
    if fmt is None:
        known = ", ".join(sorted(_REGISTRY.names()))
        raise ConfigError(f"unknown checkpoint format {name!r}; known formats: {known}")
    return fmt
