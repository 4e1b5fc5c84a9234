"""git-theta 0.2's environment variables, read as aliases of today's configuration.

0.2 was configured through `GIT_THETA_*` variables. Where a counterpart exists, the variable is
turned into that git config key for this process and every git it starts (and so every
git-theta filter those start), through git's own `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_<n>`/
`GIT_CONFIG_VALUE_<n>` (git 2.31+, https://git-scm.com/docs/git-config#ENVIRONMENT). Like
`git -c`, that wins over every config file, as the variable did in 0.2.

    GIT_THETA_CHECKPOINT_TYPE    theta.format            (pytorch, safetensors, npz)
    GIT_THETA_UPDATE_TYPE        theta.updateType        (auto, delta, dense, sparse, low-rank, ia3)
    GIT_THETA_MAX_CONCURRENCY    lfs.concurrenttransfers (0.2's -1, "unbounded", is left out)
    GIT_THETA_LOG_LEVEL=DEBUG    GIT_THETA_TRACE=1       (tracebacks of unexpected errors)

`GIT_THETA_UPDATE_DATA_PATH` named 0.2's side file of update tensors for the filter; here
the side file is an option of one command, `git theta add --update-data FILE`, so the variable
gets a warning pointing there instead of being read by every `git add`.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TextIO

from git_theta import settings

__all__ = ["CONFIG_ALIASES", "apply"]

CONFIG_ALIASES: dict[str, str] = {
    settings.LEGACY_CHECKPOINT_TYPE.name: settings.FORMAT.name,
    settings.LEGACY_UPDATE_TYPE.name: settings.UPDATE_TYPE.name,
    settings.LEGACY_MAX_CONCURRENCY.name: settings.LFS_CONCURRENT_TRANSFERS.name,
}
_LOG_LEVEL = settings.LEGACY_LOG_LEVEL.name
_TRACE = settings.TRACE_ENV.name
_UPDATE_DATA = settings.LEGACY_UPDATE_DATA.name
# Marks an environment this module has translated, so a git-theta started by git (whose
# environment already holds the keys) does not add them a second time.
_DONE = settings.LEGACY_APPLIED.name


def _value(name: str, raw: str) -> str | None:
    value = raw.strip()
    if name == settings.LEGACY_MAX_CONCURRENCY.name:
        try:
            return value if int(value) > 0 else None
        except ValueError:
            return value  # lfs.concurrenttransfers reports the bad number itself
    return value or None


def apply(environ: MutableMapping[str, str], warn: TextIO | None = None) -> list[str]:
    """Add the config entries that 0.2's variables in `environ` stand for; returns the keys
    set. Idempotent for an environment it has already translated."""
    if environ.get(_DONE):
        return []
    pairs = [
        (key, value)
        for name, key in CONFIG_ALIASES.items()
        if name in environ
        for value in [_value(name, environ[name])]
        if value is not None
    ]
    if environ.get(_LOG_LEVEL, "").strip().upper() == "DEBUG":
        environ.setdefault(_TRACE, "1")
    if environ.get(_UPDATE_DATA) and warn is not None:
        warn.write(
            f"git-theta: warning: {_UPDATE_DATA} (git-theta 0.2's side file) is not read; "
            "use `git theta add FILE --update-type low-rank|ia3 --update-data SIDE_FILE`\n"
        )
    if not pairs:
        return []
    try:
        count = int(environ.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    for i, (key, value) in enumerate(pairs, start=count):
        environ[f"GIT_CONFIG_KEY_{i}"] = key
        environ[f"GIT_CONFIG_VALUE_{i}"] = value
    environ["GIT_CONFIG_COUNT"] = str(count + len(pairs))
    environ[_DONE] = "1"
    return [key for key, _ in pairs]
