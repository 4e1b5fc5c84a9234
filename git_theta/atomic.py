"""Writing a file so that it is either as it was or whole: a temp file beside it, then a rename.

Every file git-theta writes where a reader (git, the user, a training script) may look goes
through here; the object store's `put` has its own tuned path (store/objects.py).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "write_bytes"]


@contextmanager
def atomic_write(
    target: str | os.PathLike[str], *, keep_mode: bool = False, mode: int | None = None
) -> Iterator[BinaryIO]:
    """A binary file to write that replaces `target` when the block ends without an error;
    on an error the temp file is removed and `target` is left as it was.

    Args:
        keep_mode: give the new file `target`'s permission bits (when `target` exists).
        mode: permission bits for the new file (after `keep_mode`, when both apply).
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        if keep_mode and target.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        elif mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(
    target: str | os.PathLike[str], data: bytes, *, keep_mode: bool = False, mode: int | None = None
) -> None:
    """Replace `target` with `data` atomically (see atomic_write)."""
    with atomic_write(target, keep_mode=keep_mode, mode=mode) as f:
        f.write(data)
