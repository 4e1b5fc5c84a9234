"""`git-theta textconv FILE`: one checkpoint version as text, for `git show` and `git log -p`.

Those commands run attribute-based external diff drivers only with `--ext-diff`, but they do
run a `textconv` by default (https://git-scm.com/docs/gitattributes#_performing_text_diffs_of_binary_files).
git then diffs two such texts line by line, so each parameter is one line: added, removed and
changed parameters, dtype and shape changes show up as lines. Statistics of the change need
both versions at once and are left to the diff driver and `git theta diff`.
"""

from __future__ import annotations

import os
from typing import TextIO

from git_theta.filters import FilterSession

__all__ = ["textconv"]

# Enough of the content hash to tell versions apart at a glance.
SHOWN_HASH_DIGITS = 12


def textconv(file: str, out: TextIO) -> int:
    with open(file, "rb") as f:
        if not f.read(1):
            return 0
        f.seek(0)
        # git hands over a temp file (`/tmp/git-blob-XXXX/<basename>`): attributes are looked
        # up by that basename, which is what patterns such as `*.bin theta-format=...` match.
        with FilterSession(workers=1) as session:
            params = session.describe(f, os.path.basename(file))
    out.write(f"{len(params)} parameters\n")
    for name in sorted(params):
        dtype, shape, digest = params[name]
        dims = "x".join(map(str, shape)) or "scalar"
        out.write(f"{name}\t{dtype}\t{dims}\t{digest.split(':')[-1][:SHOWN_HASH_DIGITS]}\n")
    return 0
