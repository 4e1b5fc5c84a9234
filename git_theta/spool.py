"""Reading a checkpoint's first bytes without losing them, and spooling a checkpoint that must be
seekable (zip archives) to memory or to an unlinked file in the store's tmp dir."""

from __future__ import annotations

import io
import tempfile
from typing import BinaryIO

from git_theta.errors import StoreWriteError
from git_theta.store import ObjectStore

__all__ = ["PEEK_BYTES", "SPOOL_MEMORY_BYTES", "Peeked", "Spools", "read_head"]

# Enough to tell every built-in format apart from the metadata magic and the safetensors prefix.
PEEK_BYTES = 64
# Checkpoints that need a seekable file (zip archives) are spooled; past this, to disk.
SPOOL_MEMORY_BYTES = 64 * 1024 * 1024
_COPY_BYTES = 1024 * 1024


class Peeked(io.RawIOBase):
    """A stream with its first bytes already read and put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)  # type: ignore[attr-defined]


def read_head(stream: BinaryIO, n: int) -> bytes:
    """Up to `n` bytes from the start of `stream` (fewer only at its end)."""
    parts = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class Spools:
    """Spooled copies of checkpoints, kept open until `close` (the next file's clean)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._open: list[BinaryIO] = []

    def close(self) -> None:
        for spooled in self._open:
            spooled.close()
        self._open.clear()

    def spool(self, stream: BinaryIO) -> BinaryIO:
        """The checkpoint in a seekable file: in memory, past SPOOL_MEMORY_BYTES an unlinked
        temp file in the store's tmp dir (on the store's disk, not /tmp's).

        Raises:
            StoreWriteError: the tmp dir cannot be written (a full disk).
        """
        tmp_dir = self._store.tmp_dir
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            spooled = tempfile.SpooledTemporaryFile(
                max_size=SPOOL_MEMORY_BYTES, mode="w+b", dir=str(tmp_dir)
            )
        except OSError as exc:
            raise StoreWriteError(
                f"cannot spool the checkpoint to {tmp_dir}: {exc.strerror or exc}", path=tmp_dir
            ) from None
        view = memoryview(bytearray(_COPY_BYTES))
        while n := stream.readinto(view):  # type: ignore[attr-defined]
            try:
                spooled.write(view[:n])
            except OSError as exc:  # a full disk: the unlinked file goes with the close
                spooled.close()
                raise StoreWriteError(
                    f"cannot spool the checkpoint to {tmp_dir}: {exc.strerror or exc}",
                    path=tmp_dir,
                    errno=exc.errno,
                ) from None
        spooled.seek(0)
        self._open.append(spooled)  # type: ignore[arg-type]
        return spooled  # type: ignore[return-value]
