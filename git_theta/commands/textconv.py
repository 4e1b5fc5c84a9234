"""`git-theta textconv FILE`: one checkpoint version as text, for `git show` and `git log -p`.

Those commands run attribute-based external diff drivers only with `--ext-diff`, but they do
run a `textconv` by default (https://git-scm.com/docs/gitattributes#_performing_text_diffs_of_binary_files)
and diff two such texts line by line. The text is laid out for that (git_theta/diffing/listing.py):
a summary line, then one line per parameter with its dtype, shape, L2 norm, mean, max |x|
and content hash, so a modified parameter reads as a -/+ pair of old and new values.

What git hands over is a temporary file holding the *smudged* checkpoint (the whole file,
rebuilt from the objects), or the work tree file itself; never the metadata blob. So update
types and stored sizes, which only the metadata knows, are not shown here; at a terminal
`git theta pager` (git_theta/commands/pager.py) replaces this text with the full table,
and `--ext-diff` and `git theta diff` show it too. A metadata file is still accepted (its
tensors are read from the local store).

`git theta install` sets `diff.theta.cachetextconv = true`: git then keeps each text in
`refs/notes/textconv/theta`, keyed by the metadata blob's id, and the cache is valid only
while the textconv command string is the same. The installed command carries the layout
number (`git-theta textconv --layout 2`), so a git-theta that writes another
layout gets a fresh cache once `git theta install` has run, and refuses to add its text to a
cache of the other layout before that.
"""

from __future__ import annotations

import os
from typing import TextIO

import xxhash

from git_theta.diffing.listing import LAYOUT, SHOWN_HASH_DIGITS, listing
from git_theta.diffing.sides import side_from_file
from git_theta.errors import CheckpointError, ConfigError
from git_theta.git.repo import Repo
from git_theta.store import open_store

__all__ = ["textconv"]

_READ_BYTES = 1 << 20


def _check_layout(declared: str | None) -> None:
    if declared is not None and declared != str(LAYOUT):
        raise ConfigError(
            f"diff.theta.textconv was installed for text layout {declared}, this git-theta "
            f"writes layout {LAYOUT} (git would mix them in its textconv cache); "
            "run `git theta install`"
        )


def textconv(file: str, out: TextIO, *, layout: str | None = None) -> int:
    """Write the text that stands for checkpoint `file` (see the module doc) to `out`; a
    file that is not a readable checkpoint gets one line saying so.

    `layout` is the layout number the installed command names (None: not named).

    Raises:
        ConfigError: the installed command names another text layout.
        MissingObjectError: `file` is metadata whose objects are not fetched.
    """
    _check_layout(layout)
    with open(file, "rb") as f:
        if not f.read(1):
            return 0
    # git hands over a temp file (`/tmp/git-blob-XXXX/<basename>`): attributes are looked up
    # by that basename, which is what patterns such as `*.bin theta-format=...` match.
    name = os.path.basename(file)
    repo = Repo()
    try:
        side = side_from_file(file, path=name, label=name, store=open_store(repo), repo=repo)
        try:
            lines = list(listing(side))
        except CheckpointError as exc:
            # One unreadable version (say, committed before the path was tracked) must not
            # stop `git log -p` over the whole history: say so, with a hash so changes show.
            lines = [f"(git-theta cannot read this version: {exc})  {_file_hash(file)}"]
    finally:
        repo.close()
    out.writelines(line + "\n" for line in lines)
    return 0


def _file_hash(file: str) -> str:
    digest = xxhash.xxh3_128()
    size = 0
    with open(file, "rb") as f:
        while chunk := f.read(_READ_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return f"size={size}  hash={digest.hexdigest()[:SHOWN_HASH_DIGITS]}"
