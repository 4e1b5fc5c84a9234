"""A progress line on stderr for transfers that take more than a second.

Shown only when stderr is a terminal (a CI log or a pipe gets nothing), like Git LFS's meter.
Git passes a filter's and a hook's stderr straight through, so this works inside `git clone`,
`git pull` and `git push` too.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]

# Below this a transfer is over before a bar would help.
SHOW_AFTER_SECONDS = 1.0
# Redraws per second at most.
REDRAW_INTERVAL = 0.1
BAR_WIDTH = 24


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class Progress:
    """Counts objects and bytes of one transfer; thread-safe.

    Args:
        label: e.g. "Uploading checkpoint objects".
        stream: where to draw (default stderr).
        enabled: draw at all; default: only when `stream` is a terminal.
    """

    def __init__(
        self, label: str, *, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.label = label
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False
        self._lock = threading.Lock()
        self.total_objects = 0
        self.total_bytes = 0
        self.done_objects = 0
        self.done_bytes = 0

    def expect(self, nbytes: int) -> None:
        """One more object of `nbytes` will be moved."""
        with self._lock:
            self.total_objects += 1
            self.total_bytes += nbytes

    def advance(self, nbytes: int) -> None:
        """An object of `nbytes` finished (moved or failed)."""
        with self._lock:
            self.done_objects += 1
            self.done_bytes += nbytes
            self._draw(final=False)

    def finish(self) -> None:
        with self._lock:
            if self._drawn:
                self._draw(final=True)
                self._stream.write("\n")
                self._stream.flush()

    def _draw(self, *, final: bool) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._start < SHOW_AFTER_SECONDS:
            return
        if not final and now - self._last_draw < REDRAW_INTERVAL:
            return
        self._last_draw = now
        share = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        filled = int(share * BAR_WIDTH)
        rate = self.done_bytes / max(now - self._start, 1e-6)
        self._stream.write(
            f"\r{self.label}: [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{self.done_objects}/{self.total_objects} objects, "
            f"{_mib(self.done_bytes)}/{_mib(self.total_bytes)}, {_mib(int(rate))}/s"
        )
        self._stream.flush()
        self._drawn = True
