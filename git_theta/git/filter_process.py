"""Git's long-running filter protocol, version 2: handshake, capabilities, request loop.

Only framing and the request/response contract live here; the clean and smudge work is done
by the handler the caller passes. A failure on one file answers `status=error` for that file
and the loop goes on; only a broken protocol ends the process.
Spec: https://git-scm.com/docs/gitattributes#_long_running_filter_process
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from git_theta.errors import ProtocolError
from git_theta.git.pktline import ContentReader, ContentWriter, PktLineReader, PktLineWriter

__all__ = ["FilterHandler", "FilterServer", "Request"]

SERVER_CAPABILITIES = ("clean", "smudge")


@dataclass
class Request:
    """One `command=...` request: its headers and its content stream (read it to the end)."""

    command: str
    pathname: str
    headers: dict[str, str]
    content: ContentReader


class FilterHandler(Protocol):
    """Does the work for one request, writing the result to `out`.

    Raising any exception answers `status=error` for this file; `report` gets one line.
    """

    def __call__(self, request: Request, out: ContentWriter) -> None: ...


class FilterServer:
    """The server side of the protocol over a pair of binary streams."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO) -> None:
        self._reader = PktLineReader(rfile)
        self._writer = PktLineWriter(wfile)

    def handshake(self) -> set[str]:
        """Welcome and capability negotiation; returns the capabilities both sides have."""
        welcome = self._reader.read_list()
        if welcome[:1] != ["git-filter-client"] or "version=2" not in welcome[1:]:
            raise ProtocolError(f"unexpected filter handshake {welcome!r}")
        self._writer.write_list(["git-filter-server", "version=2"])
        offered = {
            item.removeprefix("capability=")
            for item in self._reader.read_list()
            if item.startswith("capability=")
        }
        agreed = [cap for cap in SERVER_CAPABILITIES if cap in offered]
        self._writer.write_list(f"capability={cap}" for cap in agreed)
        return set(agreed)

    def requests(self) -> Iterator[Request]:
        """Requests until git closes our input."""
        while True:
            try:
                items = self._reader.read_list(eof_ok=True)
            except EOFError:
                return
            headers = dict(item.split("=", 1) for item in items if "=" in item)
            if "command" not in headers:
                raise ProtocolError(f"filter request without a command: {items!r}")
            # Git sends each key once; a request naming two commands is served as neither
            # (the handler answers status=error), never as whichever came last.
            commands = sum(1 for item in items if item.startswith("command="))
            yield Request(
                command=headers["command"] if commands == 1 else "(several commands)",
                pathname=headers.get("pathname", ""),
                headers=headers,
                content=self._reader.content(),
            )

    def respond(
        self,
        request: Request,
        handler: FilterHandler,
        report: Callable[[Request, BaseException], None],
    ) -> bool:
        """Run `handler` for `request` and answer git; returns False if the request failed."""
        writer = self._writer
        out = ContentWriter(writer, on_first_write=lambda: writer.write_list(["status=success"]))
        try:
            handler(request, out)
            request.content.drain()
            out.finish()
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the process
            if isinstance(exc, ProtocolError):
                raise
            report(request, exc)
            request.content.drain()
            if out.started:
                writer.flush_packet()  # end the partial content; git discards it
            writer.write_list(["status=error"])
            return False
        writer.flush_packet()  # end of content
        writer.flush_packet()  # empty list: status stays "success"
        return True
