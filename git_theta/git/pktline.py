"""pkt-line framing, as Git's long-running filter protocol uses it.

A packet is a 4-digit hex length (counting those 4 bytes) and a payload of at most 65516
bytes; "0000" is a flush packet that ends a list or a content stream.
Spec: https://git-scm.com/docs/gitprotocol-common#_pkt_line_format
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from typing import BinaryIO

from git_theta.errors import ProtocolError

__all__ = ["MAX_PAYLOAD", "ContentReader", "ContentWriter", "PktLineReader", "PktLineWriter"]

MAX_PAYLOAD = 65516
_FLUSH = b"0000"
# Content goes out as 16 packets (~1 MiB, the pipe size the filter asks for) per writev:
# one syscall, and the payload is never copied into a buffer first.
_PACKETS_PER_WRITE = 16


def _fileno(stream: BinaryIO) -> int | None:
    """The descriptor under `stream` if writes may bypass it (a real file on a POSIX system)."""
    if not hasattr(os, "writev"):
        return None
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # in-memory streams have none
        return None


def _writev_all(fd: int, parts: list[bytes | memoryview]) -> None:
    while parts:
        n = os.writev(fd, parts)
        while parts and n >= len(parts[0]):
            n -= len(parts[0])
            parts.pop(0)
        if n:
            parts[0] = memoryview(parts[0])[n:]


class PktLineReader:
    """Reads packets from a binary stream (git's stdout side, our stdin)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def _read_length(self, *, eof_ok: bool = False) -> int | None:
        """Payload length of the next packet, 0 for a flush, None at a clean end of input."""
        raw = self._stream.read(4)
        if not raw and eof_ok:
            return None
        if len(raw) != 4:
            raise ProtocolError("pkt-line: input ended inside a packet header")
        try:
            total = int(raw, 16)
        except ValueError:
            raise ProtocolError(f"pkt-line: bad packet header {raw!r}") from None
        if total == 0:
            return 0
        if total < 4 or total - 4 > MAX_PAYLOAD:
            raise ProtocolError(f"pkt-line: bad packet length {total}")
        return total - 4

    def read_packet(self, *, eof_ok: bool = False) -> bytes | None:
        """The next payload, or None for a flush packet.

        Raises:
            EOFError: input ended cleanly before the packet (only when `eof_ok`).
        """
        n = self._read_length(eof_ok=eof_ok)
        if n is None:
            raise EOFError
        if n == 0:
            return None
        data = self._stream.read(n)
        if len(data) != n:
            raise ProtocolError("pkt-line: input ended inside a packet")
        return data

    def read_list(self, *, eof_ok: bool = False) -> list[str]:
        """Text packets up to the next flush, newline stripped.

        Git sends path names as the bytes it has, which need not be UTF-8: bytes that are not
        are kept as lone surrogates (`surrogateescape`, as Python does for file names), so
        `os.fsencode` gives back exactly what git sent.

        Raises:
            EOFError: input ended cleanly before the list began (only when `eof_ok`).
        """
        items: list[str] = []
        first = True
        while True:
            packet = self.read_packet(eof_ok=eof_ok and first)
            first = False
            if packet is None:
                return items
            items.append(packet.decode("utf-8", "surrogateescape").removesuffix("\n"))

    def content(self) -> ContentReader:
        return ContentReader(self)


class ContentReader(io.RawIOBase):
    """The data packets of one content stream, read as a file until its flush packet."""

    def __init__(self, reader: PktLineReader) -> None:
        self._reader = reader
        self._left = 0  # unread payload bytes of the current packet
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        total = 0
        stream = self._reader._stream
        while total < len(view) and not self._done:
            if self._left == 0:
                n = self._reader._read_length()
                assert n is not None
                if n == 0:
                    self._done = True
                    break
                self._left = n
            k = stream.readinto(view[total : total + min(self._left, len(view) - total)])  # type: ignore[attr-defined]
            if not k:
                raise ProtocolError("pkt-line: input ended inside a packet")
            self._left -= k
            total += k
        return total

    def drain(self) -> None:
        """Skip to the end of the stream (git waits for us to read it all before answering)."""
        buf = bytearray(MAX_PAYLOAD)
        while self.readinto(memoryview(buf)):
            pass


class PktLineWriter:
    """Writes packets to a binary stream (our stdout, git's input)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._fd = _fileno(stream)

    def write_packet(self, payload: bytes | bytearray | memoryview) -> None:
        if not 0 < len(payload) <= MAX_PAYLOAD:
            raise ValueError(f"pkt-line payload of {len(payload)} bytes")
        self._stream.write(b"%04x" % (len(payload) + 4))
        self._stream.write(payload)

    def write_list(self, items: Iterable[str]) -> None:
        """Text packets, each with a trailing newline, then a flush."""
        for item in items:
            self.write_packet(item.encode("utf-8", "surrogateescape") + b"\n")
        self.flush_packet()

    def flush_packet(self) -> None:
        self._stream.write(_FLUSH)
        self._stream.flush()

    def write_content(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self._fd is None or len(view) < _PACKETS_PER_WRITE * MAX_PAYLOAD:
            for start in range(0, len(view), MAX_PAYLOAD):
                self.write_packet(view[start : start + MAX_PAYLOAD])
            return
        self._stream.flush()  # what is buffered goes first
        step = _PACKETS_PER_WRITE * MAX_PAYLOAD
        for first in range(0, len(view), step):
            parts: list[bytes | memoryview] = []
            for start in range(first, min(first + step, len(view)), MAX_PAYLOAD):
                payload = view[start : start + MAX_PAYLOAD]
                parts += (b"%04x" % (len(payload) + 4), payload)
            _writev_all(self._fd, parts)


class ContentWriter(io.RawIOBase):
    """A file whose writes become data packets of one content stream.

    `on_first_write` runs before the first byte goes out (the filter sends its status there).
    """

    def __init__(self, writer: PktLineWriter, on_first_write: object = None) -> None:
        self._writer = writer
        self._buffer = bytearray()
        self.started = False
        self._on_first_write = on_first_write

    def writable(self) -> bool:
        return True

    def _start(self) -> None:
        if not self.started:
            self.started = True
            if callable(self._on_first_write):
                self._on_first_write()

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        if not view:
            return 0
        self._start()
        if self._buffer:
            take = min(len(view), MAX_PAYLOAD - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == MAX_PAYLOAD:
                self._writer.write_packet(self._buffer)
                self._buffer = bytearray()
        whole = len(view) - len(view) % MAX_PAYLOAD
        if whole:
            self._writer.write_content(view[:whole])
        self._buffer += view[whole:]
        return len(data)

    def finish(self) -> None:
        """Send what is buffered; the caller then sends the flush that ends the content."""
        self._start()
        if self._buffer:
            self._writer.write_packet(self._buffer)
            self._buffer = bytearray()
