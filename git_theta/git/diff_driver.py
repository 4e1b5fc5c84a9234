"""The external diff git calls for `diff=theta` paths (`diff.theta.command`).

git passes `path old-file old-hex old-mode new-file new-hex new-mode`; for the work tree side
the "file" may be the checkpoint itself rather than metadata, so both sides are read through
`FilterSession.describe`, which hashes without storing anything.

Until the summarising diff lands, this prints a unified diff of one line per parameter
(name, dtype, shape, content hash): what changed is visible, how much is not yet.
"""

from __future__ import annotations

import difflib
from typing import TextIO

from git_theta.filters import FilterSession

__all__ = ["diff_driver"]

_NULL_FILE = "/dev/null"


def _lines(session: FilterSession, file: str, path: str) -> list[str]:
    if file == _NULL_FILE:
        return []
    with open(file, "rb") as f:
        if not f.read(1):
            return []
        f.seek(0)
        params = session.describe(f, path)
    return [
        f"{name}\t{dtype}\t{list(shape)}\t{digest}\n"
        for name, (dtype, shape, digest) in sorted(params.items())
    ]


def diff_driver(path: str, old_file: str, new_file: str, out: TextIO) -> int:
    with FilterSession(workers=1) as session:
        old = _lines(session, old_file, path)
        new = _lines(session, new_file, path)
    out.write(f"diff --git-theta a/{path} b/{path}\n")
    out.writelines(difflib.unified_diff(old, new, f"a/{path}", f"b/{path}", n=0))
    return 0
