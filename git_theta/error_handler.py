"""Map errors to exit codes in one place: ours -> one line and 1, bugs -> report and 3,
^C -> 130. Click's usage errors keep their own code 2.

A bug's traceback goes to a crash log under the repository's git dir
(`<git dir>/theta/logs/`), where it stays with the repository it happened in and is not
shared with other users of the machine's temp dir; outside a repository, to the temp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from git_theta.errors import GitThetaError

__all__ = ["crash_log_dir", "error_handler", "write_crash_log"]

EXIT_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPT = 130
LOG_SUBDIR = ("theta", "logs")
# Finding the git dir is one `git rev-parse`; a crash report must not hang on it.
GIT_TIMEOUT_SECONDS = 10


def crash_log_dir() -> Path:
    """Where crash logs go: `<git dir>/theta/logs` inside a repository (as git sees it from
    here, GIT_DIR included), else the temp dir."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--absolute-git-dir"],
            capture_output=True,
            check=False,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError):
        return Path(tempfile.gettempdir())
    if proc.returncode != 0 or not proc.stdout.strip():
        return Path(tempfile.gettempdir())
    git_dir = Path(os.fsdecode(proc.stdout.rstrip(b"\n")))
    return git_dir.joinpath(*LOG_SUBDIR)


def write_crash_log(exc: BaseException) -> Path:
    """Write `exc`'s traceback to a new crash log; returns its path.

    Falls back to the temp dir when the repository's log dir cannot be written.
    """
    import traceback  # only a crash needs it: kept off every command's start-up

    text = "".join(traceback.format_exception(exc))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = f"git-theta-crash-{stamp}-"
    for where in (crash_log_dir(), Path(tempfile.gettempdir())):
        try:
            where.mkdir(parents=True, exist_ok=True)
            fd, log = tempfile.mkstemp(prefix=prefix, suffix=".log", dir=where)
        except OSError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        return Path(log)
    raise OSError("no writable place for a crash log")


@contextmanager
def error_handler() -> Iterator[None]:
    try:
        yield
    except GitThetaError as exc:
        sys.stderr.write(f"git-theta: error: {exc}\n")
        raise SystemExit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        sys.stderr.write("git-theta: interrupted\n")
        raise SystemExit(EXIT_INTERRUPT) from None
    except Exception as exc:  # noqa: BLE001 - unexpected: keep the details for a bug report
        try:
            details = f"details in {write_crash_log(exc)}"
        except OSError as log_exc:
            details = f"no crash log written: {log_exc}"
        sys.stderr.write(f"git-theta: internal error: {type(exc).__name__}: {exc} ({details})\n")
        raise SystemExit(EXIT_BUG) from None
