"""Reaching into a repository's object store from tests: paths, ages, damage."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["age_store", "flip_byte", "object_path"]


def object_path(repo: Path, oid: str) -> Path:
    """Where the object `oid` lives in `repo`'s default store."""
    return repo / ".git" / "theta" / "objects" / oid[:2] / oid[2:4] / oid


def age_store(repo: Path, seconds: float = 2 * 86400) -> None:
    """Make every file of the store look written `seconds` ago (as if time had passed)."""
    past = time.time() - seconds
    for path in (repo / ".git" / "theta").rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def flip_byte(path: Path) -> None:
    """Flip one bit in the middle of a file."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
