"""Testing only (settings.MIGRATE_PAUSE_ENV): a long command stops for good at a named point,
so an end-to-end test can kill it exactly there and check what the kill leaves
(tests/end_to_end/migrate/test_lfs_import_killed.py)."""

from __future__ import annotations

import sys
import time
from typing import BinaryIO

from git_theta import settings

__all__ = ["pause_point"]


def pause_point(name: str, *pipes: BinaryIO) -> None:
    """Stop here for good when the test variable names `name`: first flush `pipes` (so the
    child processes have what was written to them), then say so on stderr, where the test
    waits for it. Otherwise return at once."""
    if settings.MIGRATE_PAUSE_ENV.read() != name:
        return
    for pipe in pipes:
        pipe.flush()
    sys.stderr.write(f"git-theta: paused at {name}\n")
    sys.stderr.flush()
    while True:
        time.sleep(60)
