"""A cap on the bytes a reader hands to worker threads before they are done with them."""

from __future__ import annotations

import threading

__all__ = ["ByteBudget"]


class ByteBudget:
    """Caps bytes in flight. A tensor larger than half the cap counts as half of it, and only
    one such is in flight at a time: small tensors keep the workers busy while a large one is
    compressed, instead of the reader waiting for it alone."""

    def __init__(self, limit: int) -> None:
        self._half = limit // 2
        self._limit = limit
        self._used = 0
        self._large = False
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        """Wait until `n` more bytes fit, then count them."""
        large = n > self._half
        cost = min(n, self._half)
        with self._cond:
            self._cond.wait_for(
                lambda: not (large and self._large) and self._used + cost <= self._limit
            )
            self._used += cost
            self._large = self._large or large

    def release(self, n: int) -> None:
        """Give back what `acquire(n)` counted."""
        with self._cond:
            self._used -= min(n, self._half)
            if n > self._half:
                self._large = False
            self._cond.notify_all()
