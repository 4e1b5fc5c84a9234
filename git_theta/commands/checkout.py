"""`git theta checkout`: write out every tracked checkpoint that is missing from the work tree
or whose file still holds metadata.

Metadata files are what a clone made without git-theta leaves behind; a missing file is one
deleted, or removed by git before a smudge that failed (an object was not at hand). The objects
all of them need are fetched in one transfer first. Then every checkpoint whose objects are all
present is written: a file holding exactly the index's metadata (also what a killed direct
checkout leaves, docs/design.md) by the direct checkout's finisher, anything else checked out
again through git (a metadata file is removed first: git keeps that content); each one that
cannot be restored is named, and the command exits 1.
"""

from __future__ import annotations

import sys
from typing import TextIO

from git_theta import metadata as md
from git_theta.context import RepoContext
from git_theta.direct import finish, holds
from git_theta.errors import ConfigError, TransferError
from git_theta.git import worktree
from git_theta.git.repo import Repo
from git_theta.smudge import Smudger
from git_theta.store import open_store
from git_theta.transfer.objects_in import Referenced
from git_theta.transfer.remote import download

__all__ = ["checkout"]


def checkout(remote: str | None, *, out: TextIO, err: TextIO | None = None) -> int:
    """Restore the tracked checkpoints that need it; 0 when all were, 1 when some could not be
    (each named on `err`, default stderr, with the reason)."""
    err = err or sys.stderr
    repo = Repo()
    if not repo.config_get("filter.theta.process"):
        raise ConfigError(
            "git-theta's filter is not configured for this repository; run `git theta install`"
        )
    stale = worktree.unsmudged(repo)
    todo = sorted(set(stale) | set(worktree.absent(repo)))
    if not todo:
        out.write("Every tracked checkpoint is checked out already.\n")
        return 0
    referenced = Referenced()
    metas: dict[str, md.Metadata] = {}
    blobs: dict[str, bytes] = {}
    for path in todo:
        blob = repo.read_blob(f":{path}")
        if blob is not None and md.looks_like_metadata(blob[: len(md.MAGIC)]):
            metas[path] = md.decode(blob, source=f"index:{path}")
            blobs[path] = blob
            referenced.add(path, metas[path])
    reason = "no remote has them (`git theta fetch --remote NAME` from one that does)"
    try:
        download(repo, remote, referenced.refs, users=referenced.users)
    except TransferError as exc:
        reason = str(exc)  # restore what can be restored; name the rest below
    store = open_store(repo)
    failed = {}
    for path, meta in metas.items():
        missing = store.missing(meta.objects())
        if missing:
            failed[path] = len({ref.oid for ref in missing})
    ready = [p for p in todo if p not in failed]
    _restore(repo, ready, stale, blobs)
    if ready:
        out.write(f"Checked out {len(ready)} checkpoint(s).\n")
    for path, count in failed.items():
        err.write(
            f"git-theta: error: {path}: not restored, {count} object(s) missing from "
            f"{store.objects_dir}; {reason}\n"
        )
    return 1 if failed else 0


def _restore(repo: Repo, ready: list[str], stale: list[str], blobs: dict[str, bytes]) -> None:
    """Write `ready`. A file holding exactly the index's metadata (a direct checkout that did
    not finish, a clone made without git-theta) is written as a direct checkout would;
    anything else goes through git."""
    finishable = {p: blobs[p] for p in ready if p in blobs and holds(repo.worktree / p, blobs[p])}
    if finishable:
        with RepoContext(repo) as ctx:
            finish(ctx, Smudger(ctx), finishable)
    rest = [p for p in ready if p not in finishable]
    if not rest:
        return
    for path in rest:
        if path in stale:
            (repo.worktree / path).unlink()
    repo.git(
        "--literal-pathspecs",
        "checkout",
        "--pathspec-from-file=-",
        "--pathspec-file-nul",
        input="".join(f"{p}\0" for p in rest).encode(),
    )
