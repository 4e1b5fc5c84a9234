"""Map errors to exit codes in one place: ours -> one line and 1, bugs -> report and 3,
^C -> 130. Click's usage errors keep their own code 2."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from git_theta.errors import GitThetaError

__all__ = ["error_handler"]

EXIT_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPT = 130


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
        import traceback  # only a crash needs it: kept off every command's start-up

        fd, log = tempfile.mkstemp(prefix="git-theta-crash-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        sys.stderr.write(
            f"git-theta: internal error: {type(exc).__name__}: {exc} (details in {log})\n"
        )
        raise SystemExit(EXIT_BUG) from None
