"""Replace objects that fail verification with fresh, verified downloads (smudge, fetch).

A copy on disk whose bytes do not hash to its oid is never trusted again: it is moved aside to
`<store>/bad/<oid>` (kept as evidence, as Git LFS keeps `.git/lfs/bad`) and downloaded again. Only
when a remote could supply it: without one, the bad copy stays where it is and the caller
reports it corrupt, which tells the user more than "missing" would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from git_theta.errors import TransferError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.store.objects import ObjectStore
from git_theta.store.verify import check_bytes, move_aside

__all__ = ["replace_corrupt", "set_aside_truncated"]


def replace_corrupt(
    repo: Repo,
    store: ObjectStore,
    refs: Sequence[ObjectRef],
    downloader: Callable[[Sequence[ObjectRef]], None],
    *,
    tried: set[str],
) -> bool:
    """Move those of `refs` that fail their sha256 aside and download them again.

    Args:
        downloader: fetches refs into `store` (verified as they arrive).
        tried: oids already replaced in this session; each is tried once, and added here.
    Returns:
        True when at least one object was replaced and every replaced one now verifies (the
        caller may retry what failed); False when nothing was bad, there is no remote, or the
        download failed.
    """
    from git_theta.transfer.endpoint import default_remote

    bad = [r for r in refs if r.oid not in tried and check_bytes(store, r) not in (None, "missing")]
    if not bad or default_remote(repo) is None:
        return False
    for ref in bad:
        tried.add(ref.oid)
        move_aside(store, ref.oid)
    try:
        downloader(bad)
    except TransferError:
        return False
    return all(check_bytes(store, ref) is None for ref in bad)


def set_aside_truncated(repo: Repo, store: ObjectStore, refs: Sequence[ObjectRef]) -> None:
    """Move aside the files of `refs` whose size is wrong (a copy cut short), so a download
    can put the object in their place; only when a remote could supply them."""
    from git_theta.transfer.endpoint import default_remote

    present = [r for r in refs if store.path(r.oid).exists()]
    if present and default_remote(repo) is not None:
        for ref in present:
            move_aside(store, ref.oid)
