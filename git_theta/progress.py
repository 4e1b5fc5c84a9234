"""Progress of long clean and smudge work on stderr, as Git and Git LFS show theirs.

A bar appears only when stderr is a terminal (tqdm's `disable=None`), and only once the work
has taken SHOW_AFTER_SECONDS, so pipes, CI logs and small checkpoints get nothing. Git passes
a filter's stderr straight through, so `git add`, `git checkout` and `git clone` show it.
`GIT_THETA_PROGRESS=0` turns it off; `=1` forces it (for tests).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from git_theta import settings

__all__ = ["PROGRESS_ENV", "SHOW_AFTER_SECONDS", "with_progress"]

PROGRESS_ENV = settings.PROGRESS_ENV.name
# Below this the work is over before a bar would help (Git LFS waits about as long).
SHOW_AFTER_SECONDS = 1.0

T = TypeVar("T")


def _disable() -> bool | None:
    setting = (settings.PROGRESS_ENV.read() or "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return True
    if setting in ("1", "true", "yes", "on"):
        return False
    return None  # tqdm: on only when the stream is a terminal


def with_progress(
    items: Iterator[T], *, label: str, total: int | None, size: Callable[[T], int]
) -> Iterator[T]:
    """`items` unchanged, advancing a bytes bar by `size(item)` after each is consumed."""
    disable = _disable()
    if disable is True or (disable is None and not sys.stderr.isatty()):
        yield from items  # no tqdm import on the quiet path (every filter in a pipe)
        return
    from tqdm import tqdm

    delay = 0.0 if disable is False else SHOW_AFTER_SECONDS
    with tqdm(
        total=total or None,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=disable,
        delay=delay,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for item in items:
            n = size(item)
            yield item
            bar.update(n)
