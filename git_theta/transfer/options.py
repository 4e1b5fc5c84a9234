"""Transfer settings from git config: Git LFS's own keys where Git LFS has one, so one setting
serves both tools, and `theta.transfer.*` for the bounds Git LFS lacks (docs/transfer.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from git_theta import settings
from git_theta.errors import ConfigError
from git_theta.git.repo import Repo
from git_theta.settings import ConfigKey

__all__ = ["TransferOptions"]

# Git LFS's default for lfs.concurrenttransfers.
DEFAULT_CONCURRENCY = 8
# Fewer than Git LFS's 8: each retry of a dead server costs the user seconds of waiting.
DEFAULT_MAX_RETRIES = 4
# Git LFS's default ceiling for lfs.transfer.maxretrydelay, in seconds.
DEFAULT_MAX_RETRY_DELAY = 10.0
# The first back-off; it doubles per attempt up to the ceiling.
FIRST_RETRY_DELAY = 0.25
# Seconds every HTTP operation may take on top of its bytes at the minimum rate: a batch
# request, a verify call and the wait before an object's first byte fit in it many times over.
DEFAULT_TIMEOUT = 300.0
# Bytes per second. Far below any working link, even one shared by 8 concurrent transfers, so a
# healthy transfer is never cut; a server trickling a byte now and then is.
DEFAULT_MIN_RATE = 1024
# Seconds over which the rate is measured; as long as Git LFS's lfs.activitytimeout (30 s), so
# a server that sends nothing at all is cut off when Git LFS would cut it off.
DEFAULT_RATE_WINDOW = 30.0

TIMEOUT_KEY = settings.TRANSFER_TIMEOUT.name
MIN_RATE_KEY = settings.TRANSFER_MIN_RATE.name
RATE_WINDOW_KEY = settings.TRANSFER_RATE_WINDOW.name

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class TransferOptions:
    """How hard to push on the network, and when to give up on a server.

    Attributes:
        concurrency: objects moved at once (`lfs.concurrenttransfers`).
        max_retries: further attempts after a 5xx, 429, dropped connection or stall
            (`lfs.transfer.maxretries`).
        max_retry_delay: ceiling of the exponential back-off, seconds
            (`lfs.transfer.maxretrydelay`).
        timeout: seconds each HTTP operation may take beyond its bytes at `min_rate`, retries
            included (`theta.transfer.timeout`); see `deadline`.
        min_rate: bytes per second a transfer must keep up over every `rate_window`
            (`theta.transfer.minRate`).
        rate_window: seconds over which `min_rate` is measured; also the longest silence
            (`theta.transfer.rateWindow`).
    """

    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY
    first_retry_delay: float = FIRST_RETRY_DELAY
    timeout: float = DEFAULT_TIMEOUT
    min_rate: int = DEFAULT_MIN_RATE
    rate_window: float = DEFAULT_RATE_WINDOW

    @classmethod
    def from_config(cls, repo: Repo) -> TransferOptions:
        """The options set in `repo`'s git config, defaults for the rest.

        Raises:
            ConfigError: a value is not a number or is out of range.
        """
        return cls(
            concurrency=_int(
                repo, settings.LFS_CONCURRENT_TRANSFERS, DEFAULT_CONCURRENCY, minimum=1
            ),
            max_retries=_int(repo, settings.LFS_MAX_RETRIES, DEFAULT_MAX_RETRIES, minimum=0),
            max_retry_delay=float(
                _int(repo, settings.LFS_MAX_RETRY_DELAY, int(DEFAULT_MAX_RETRY_DELAY), minimum=0)
            ),
            timeout=_seconds(repo, settings.TRANSFER_TIMEOUT, DEFAULT_TIMEOUT),
            min_rate=_bytes(repo, settings.TRANSFER_MIN_RATE, DEFAULT_MIN_RATE),
            rate_window=_seconds(repo, settings.TRANSFER_RATE_WINDOW, DEFAULT_RATE_WINDOW),
        )

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return min(self.max_retry_delay, self.first_retry_delay * 2 ** (attempt - 1))

    def deadline(self, nbytes: int) -> float:
        """Seconds an operation moving `nbytes` may take in all, its retries included: the
        bytes at the minimum rate plus `timeout`, so it grows with the object and a multi-GB
        object at a healthy rate never meets it."""
        return self.timeout + nbytes / self.min_rate


def _raw(repo: Repo, setting: ConfigKey) -> tuple[str, str | None]:
    return setting.name, setting.read(repo)


def _int(repo: Repo, setting: ConfigKey, default: int, *, minimum: int) -> int:
    key, raw = _raw(repo, setting)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"git config {key} = {raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"git config {key} = {value} must be at least {minimum}")
    return value


def _seconds(repo: Repo, setting: ConfigKey, default: float) -> float:
    key, raw = _raw(repo, setting)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"git config {key} = {raw!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"git config {key} = {raw} must be a positive number of seconds")
    return value


def _bytes(repo: Repo, setting: ConfigKey, default: int) -> int:
    key, raw = _raw(repo, setting)
    if raw is None:
        return default
    match = _SIZE.match(raw)
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"git config {key} = {raw!r} must be a positive number of bytes per second "
            "(a k, m or g suffix multiplies by 1024, 1024², 1024³)"
        )
    return int(match[1]) * _UNITS[match[2].lower()]
