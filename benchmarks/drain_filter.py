"""A long-running clean filter that does nothing but drain git's content: the floor any
filter pays for `git status` after `touch` of a large tracked file.

It speaks git's filter protocol (version 2), reads each file's content as it arrives and
throws it away, and answers with a two-byte stand-in (git then lists the file as modified).
What it costs is git's own work, reading the file and writing it into the pipe, plus the
cheapest possible read on our side:

    git -c filter.theta.process="python benchmarks/drain_filter.py [read|readv|splice]" \\
        status --short

`read` reads each packet's payload into a reused buffer, `readv` reads the payload and the
next packet's header in one call, `splice` moves the pipe's pages to /dev/null uncopied.
Spec: https://git-scm.com/docs/gitattributes#_long_running_filter_process
"""

from __future__ import annotations

import fcntl
import os
import sys

_F_SETPIPE_SZ = 1031  # Linux: enlarge the pipe as the real filter does


def _exact(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _packet(fd: int) -> bytes | None:
    n = int(_exact(fd, 4), 16)
    return None if n == 0 else _exact(fd, n - 4)


def _packets(fd: int) -> list[bytes]:
    out = []
    while (p := _packet(fd)) is not None:
        out.append(p)
    return out


def _drain(fd: int, mode: str, scratch: memoryview, devnull: int) -> None:
    """Read one content stream up to its flush packet and discard it."""
    header = bytearray(4)
    n = int(_exact(fd, 4), 16)
    while n:
        left = n - 4
        if mode == "splice":
            while left:
                left -= os.splice(fd, devnull, left)
            n = int(_exact(fd, 4), 16)
            continue
        if mode == "read":
            while left:
                left -= os.readv(fd, [scratch[:left]])
            n = int(_exact(fd, 4), 16)
            continue
        got = 0
        while got < left + 4:  # the payload and, in the same call, the next header
            if got < left:
                got += os.readv(fd, [scratch[got:left], header])
            else:
                got += os.readv(fd, [memoryview(header)[got - left :]])
        n = int(bytes(header), 16)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "readv"
    try:
        fcntl.fcntl(0, _F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    out = os.fdopen(1, "wb")

    def send(*items: bytes) -> None:
        for item in items:
            out.write(b"%04x" % (len(item) + 4) + item)
        out.write(b"0000")
        out.flush()

    _packets(0)
    send(b"git-filter-server\n", b"version=2\n")
    _packets(0)
    send(b"capability=clean\n")
    scratch = memoryview(bytearray(1 << 16))
    devnull = os.open(os.devnull, os.O_WRONLY)
    while True:
        try:
            _packets(0)  # command and pathname
        except EOFError:
            return
        _drain(0, mode, scratch, devnull)
        send(b"status=success\n")
        send(b"x\n")
        send()


if __name__ == "__main__":
    main()
