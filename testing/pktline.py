"""Build and parse pkt-line byte strings the way git writes and reads them, for protocol tests."""

from __future__ import annotations

__all__ = ["flush", "parse", "pkt", "text"]


def pkt(payload: bytes) -> bytes:
    return b"%04x" % (len(payload) + 4) + payload


def text(*lines: str) -> bytes:
    return b"".join(pkt(line.encode() + b"\n") for line in lines)


def flush() -> bytes:
    return b"0000"


def content(data: bytes, size: int = 65516) -> bytes:
    return b"".join(pkt(data[i : i + size]) for i in range(0, len(data), size)) + flush()


def parse(stream: bytes) -> list[bytes | None]:
    """Packets of a byte string; None stands for a flush packet."""
    out: list[bytes | None] = []
    i = 0
    while i < len(stream):
        n = int(stream[i : i + 4], 16)
        if n == 0:
            out.append(None)
            i += 4
        else:
            out.append(stream[i + 4 : i + n])
            i += n
    return out


# What git sends to start a long-running filter (offering clean, smudge and delay), and what
# git-theta's filter answers.
CLIENT_HANDSHAKE = (
    text("git-filter-client", "version=2")
    + flush()
    + text("capability=clean", "capability=smudge", "capability=delay")
    + flush()
)
SERVER_HANDSHAKE = [
    b"git-filter-server\n",
    b"version=2\n",
    None,
    b"capability=clean\n",
    b"capability=smudge\n",
    None,
]
