"""Transfer settings, read from git config under Git LFS's own keys so one setting serves both."""

from __future__ import annotations

from dataclasses import dataclass

from git_theta.errors import ConfigError
from git_theta.git.repo import Repo

__all__ = ["TransferOptions"]

# Git LFS's default for lfs.concurrenttransfers.
DEFAULT_CONCURRENCY = 8
# Fewer than Git LFS's 8: each retry of a dead server costs the user seconds of waiting.
DEFAULT_MAX_RETRIES = 4
# Git LFS's default ceiling for lfs.transfer.maxretrydelay, in seconds.
DEFAULT_MAX_RETRY_DELAY = 10.0
# The first back-off; it doubles per attempt up to the ceiling.
FIRST_RETRY_DELAY = 0.25


@dataclass(frozen=True)
class TransferOptions:
    """How hard to push on the network.

    Attributes:
        concurrency: objects moved at once (`lfs.concurrenttransfers`).
        max_retries: further attempts after a 5xx, 429 or dropped connection
            (`lfs.transfer.maxretries`).
        max_retry_delay: ceiling of the exponential back-off, seconds
            (`lfs.transfer.maxretrydelay`).
    """

    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY
    first_retry_delay: float = FIRST_RETRY_DELAY

    @classmethod
    def from_config(cls, repo: Repo) -> TransferOptions:
        return cls(
            concurrency=_int(repo, "lfs.concurrenttransfers", DEFAULT_CONCURRENCY, minimum=1),
            max_retries=_int(repo, "lfs.transfer.maxretries", DEFAULT_MAX_RETRIES, minimum=0),
            max_retry_delay=float(
                _int(repo, "lfs.transfer.maxretrydelay", int(DEFAULT_MAX_RETRY_DELAY), minimum=0)
            ),
        )

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return min(self.max_retry_delay, self.first_retry_delay * 2 ** (attempt - 1))


def _int(repo: Repo, key: str, default: int, *, minimum: int) -> int:
    raw = repo.config_get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"git config {key} = {raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"git config {key} = {value} must be at least {minimum}")
    return value
