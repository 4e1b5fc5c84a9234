"""The external diff git calls for `diff=theta` paths (`diff.theta.command`).

git runs `git-theta diff-driver path old-file old-hex old-mode new-file new-hex new-mode`
(two more arguments after a rename, only `path` for an unmerged path). A side that git has
as a blob comes with its id; we read that blob, which is our metadata, so unchanged tensors
are never read. A work tree side has a null id and its file is the checkpoint itself.
Spec: https://git-scm.com/docs/git#Documentation/git.txt-codeGITEXTERNALDIFFcode

(git smudges blob sides into temporary files before it calls us; we do not read those.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from git_theta.diffing.compare import compare, raise_for_missing
from git_theta.diffing.render import file_text
from git_theta.diffing.sides import Side, side_from_bytes, side_from_file
from git_theta.errors import ConfigError
from git_theta.git.repo import Repo
from git_theta.store import ObjectStore, open_store

__all__ = ["diff_driver"]

_NULL_FILE = "/dev/null"
# git's count of arguments: path, then file, hex and mode for each side.
_ARGS = 7


def _is_oid(hexid: str) -> bool:
    return (
        len(hexid) >= 40 and bool(hexid.strip("0")) and all(c in "0123456789abcdef" for c in hexid)
    )


def _side(
    repo: Repo, store: ObjectStore, path: str, file: str, hexid: str, label: str
) -> Side | None:
    if file == _NULL_FILE:
        return None
    if _is_oid(hexid):
        blob = repo.read_blobs([hexid]).get(hexid)
        if blob is not None:
            return side_from_bytes(blob, path=path, label=label, store=store, repo=repo)
    return side_from_file(file, path=path, label=label, store=store, repo=repo)


def diff_driver(args: Sequence[str], *, out: TextIO) -> int:
    """Print the per-parameter summary of one path for git's external diff contract."""
    if len(args) == 1:
        out.write(f"* Unmerged path {args[0]}\n")
        return 0
    if len(args) < _ARGS:
        raise ConfigError(
            f"diff-driver expects the {_ARGS} arguments git passes, got {len(args)}; "
            "it is run by git for paths with diff=theta"
        )
    path, old_file, old_hex, _, new_file, new_hex, _ = args[:_ARGS]
    repo = Repo()
    try:
        store = open_store(repo)
        old = _side(repo, store, path, old_file, old_hex, f"a/{path}")
        new = _side(repo, store, path, new_file, new_hex, f"b/{path}")
        result = compare(path, old, new)
    finally:
        repo.close()
    raise_for_missing([result])
    out.write(file_text(result))
    return 0
