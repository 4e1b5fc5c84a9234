"""The clock of one HTTP operation: an overall deadline and a minimum transfer rate.

A per-read timeout alone lets a server hold a transfer forever by sending one byte just before
each timeout. So every operation (a batch request, one object's upload or download, a verify
call) gets a deadline for all its attempts together, `timeout + bytes / minRate` seconds, and
each attempt must move at least `minRate` bytes per second, measured over every stretch of
`rateWindow` seconds from its start. The socket timeout is the window itself: a server that
sends nothing at all is cut off at the window's end (Git LFS's `lfs.activitytimeout`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from git_theta.transfer.options import MIN_RATE_KEY, TIMEOUT_KEY, TransferOptions

__all__ = ["Pace", "TooSlow", "format_bytes"]

# Rate samples kept per window: enough to measure it within a sixteenth, few enough that a fast
# transfer (thousands of chunks a second) keeps a short list.
SAMPLES_PER_WINDOW = 16


class TooSlow(Exception):
    """The server fell below the minimum rate, sent nothing for a whole window, or the
    operation ran past its deadline. Worth another attempt while the deadline allows."""


def format_bytes(n: float) -> str:
    """`n` bytes for a message: "12 B", "3.5 KiB", "1.2 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Pace:
    """Deadline and rate of one operation moving `nbytes` (0 for a request of a few bytes).

    Args:
        options: `timeout`, `min_rate` and `rate_window`.
        nbytes: the bytes the operation moves; its deadline grows with them.
        clock: seconds, monotonic (tests may pass another).
    """

    def __init__(
        self,
        options: TransferOptions,
        nbytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options = options
        self._clock = clock
        self.started = clock()
        self.deadline = options.deadline(nbytes)
        self._samples: deque[tuple[float, int]] = deque()
        self._total = 0
        self.start_attempt()

    def start_attempt(self) -> None:
        """A new connection: the rate is measured afresh, the deadline goes on."""
        self._samples = deque([(self._clock(), 0)])
        self._total = 0

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.started + self.deadline - self._clock()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def socket_timeout(self) -> float:
        """How long one read or write may wait: the rate window, or less near the deadline."""
        return max(0.001, min(self._options.rate_window, self.remaining()))

    def advance(self, nbytes: int) -> None:
        """`nbytes` more were received or sent.

        Raises:
            TooSlow: the deadline has passed, or the last window moved too few bytes.
        """
        now = self._clock()
        self._total += nbytes
        if now - self.started > self.deadline:
            raise TooSlow(self.deadline_reason())
        window = self._options.rate_window
        horizon = now - window
        samples = self._samples
        # Keep the newest sample at or before the horizon as the baseline.
        while len(samples) > 1 and samples[1][0] <= horizon:
            samples.popleft()
        since, base = samples[0]
        if since <= horizon:
            moved, span = self._total - base, now - since
            if moved < self._options.min_rate * span:
                # Neither the bytes nor the exact span go in: objects cut off together then
                # share one reason in the summary line.
                raise TooSlow(
                    f"too slow: {format_bytes(moved / span)}/s over the last {window:g} s "
                    f"(below {MIN_RATE_KEY} = {format_bytes(self._options.min_rate)}/s)"
                )
        if now - samples[-1][0] >= window / SAMPLES_PER_WINDOW:
            samples.append((now, self._total))

    def silence_reason(self) -> str:
        """Why a read or write that timed out ends the attempt."""
        if self.expired():
            return self.deadline_reason()
        return (
            f"too slow: nothing moved for {self._options.rate_window:g} s "
            f"(below {MIN_RATE_KEY} = {format_bytes(self._options.min_rate)}/s)"
        )

    def deadline_reason(self) -> str:
        return f"not done within {self.deadline:.0f} s ({TIMEOUT_KEY} + size / {MIN_RATE_KEY})"
