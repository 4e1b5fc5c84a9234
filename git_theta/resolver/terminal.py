"""The terminal the resolver talks to: /dev/tty, never stdin/stdout.

Git runs the merge driver with stdout redirected (checked with git 2.39: fd 1 is not a tty, fd
0 and 2 are), and `git theta resolve` may be piped, so the user's terminal is reached through
/dev/tty, as git itself does for credential prompts. We prompt only when the user can answer:
/dev/tty opens, GIT_TERMINAL_PROMPT is not false (git's own switch for "never prompt",
https://git-scm.com/docs/git#Documentation/git.txt-codeGITTERMINALPROMPTcode), and, for the
merge driver, stderr is a terminal too, so a `git merge` run by a script or test that captures
its output never waits for input.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Protocol

__all__ = ["Terminal", "TtyTerminal", "open_terminal"]

_FALSE = {"0", "false", "no", "off"}


class Terminal(Protocol):
    """Where the resolver writes its table and reads the user's answers."""

    def write(self, text: str) -> None:
        """Show `text` (no newline added)."""

    def read_line(self, prompt: str) -> str | None:
        """Show `prompt` and return the line typed, stripped; None at end of input (Ctrl-D)."""


class TtyTerminal:
    """A Terminal on /dev/tty."""

    def __init__(self, reader: IO[str], writer: IO[str]) -> None:
        self._reader = reader
        self._writer = writer

    def write(self, text: str) -> None:
        self._writer.write(text)
        self._writer.flush()

    def read_line(self, prompt: str) -> str | None:
        self.write(prompt)
        line = self._reader.readline()
        return line.strip() if line else None

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    def __enter__(self) -> TtyTerminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_terminal(*, require_stderr_tty: bool) -> TtyTerminal | None:
    """The user's terminal, or None when nobody can answer a prompt (see the module doc)."""
    if os.environ.get("GIT_TERMINAL_PROMPT", "1").strip().lower() in _FALSE:
        return None
    if require_stderr_tty and not sys.stderr.isatty():
        return None
    try:
        fd_in = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:  # no controlling terminal (CI, cron, a daemon)
        return None
    fd_out = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
    return TtyTerminal(
        os.fdopen(fd_in, "r", encoding="utf-8", errors="replace"),
        os.fdopen(fd_out, "w", encoding="utf-8", errors="replace"),
    )
