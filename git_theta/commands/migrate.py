"""`git theta migrate import --include PATTERN [--everything | REF...]`: rewrite Git LFS history
into git-theta (git_theta/git/lfs_migrate.py), then check the work tree out again."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from git_theta.clean import Cleaner
from git_theta.context import RepoContext
from git_theta.errors import CheckpointError, ConfigError, TransferError
from git_theta.formats import sniff_format
from git_theta.git import hooks
from git_theta.git.attributes import split_pattern
from git_theta.git.lfs_migrate import import_history, lfs_object_path, survey_history
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef
from git_theta.pause_point import pause_point
from git_theta.store import ObjectStore, open_store
from git_theta.tensor import content_hash
from git_theta.transfer.remote import download

__all__ = ["migrate_import", "migrate_info"]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _full_refs(repo: Repo, refs: Sequence[str], everything: bool) -> list[str]:
    if everything:
        out = repo.git("for-each-ref", "--format=%(refname)", "refs/heads/", "refs/tags/")
        return out.decode().split()
    names = list(refs) or ["HEAD"]
    full = []
    for name in names:
        ref = repo.git("rev-parse", "--symbolic-full-name", name).decode().strip()
        if not ref.startswith("refs/"):
            raise ConfigError(f"{name}: not a branch or tag; name branches or use --everything")
        full.append(ref)
    return list(dict.fromkeys(full))


def _lfs_patterns(repo: Repo, patterns: Sequence[str]) -> list[str]:
    """Each `--include` pattern as the LFS line of `.gitattributes` at HEAD names it (given
    as the line writes it, quoted or not, or unquoted): that line is what the rewrite turns
    into git-theta's, so the converted files get our filter in every commit.

    Raises:
        ConfigError: a pattern with no `filter=lfs` line.
    """
    text = (repo.read_blob("HEAD:.gitattributes") or b"").decode("utf-8", "surrogateescape")
    lfs: dict[str, str] = {}
    for line in text.splitlines():
        parsed = split_pattern(line)
        if parsed and "filter=lfs" in parsed[2]:
            lfs[parsed[0]] = lfs[parsed[1]] = parsed[0]
    for pattern in patterns:
        if pattern not in lfs:
            raise ConfigError(
                f"{pattern!r}: no `{pattern} filter=lfs` line in .gitattributes at HEAD; "
                "--include takes a pattern exactly as .gitattributes writes it"
            )
    return list(dict.fromkeys(lfs[p] for p in patterns))


def _download_missing(repo: Repo, pointers: Mapping[str, int], missing: Mapping[str, str]) -> int:
    """Fetch the LFS objects of `missing` (oid -> `commit C: path`) from the remote Git LFS
    would use, into `.git/lfs/objects` where Git LFS itself keeps them (so `git lfs` finds
    them too), before anything is rewritten. Returns the bytes downloaded.

    Every download is bounded as any other (transfer/session.py: size, redirects, deadline
    and rate); on top, the declared sizes must fit the free disk before a byte is asked for.

    Raises:
        TransferError: one line naming the commit, path and object that could not be had.
    """
    if not missing:
        return 0
    target = ObjectStore(repo.common_dir / "lfs")
    first = next(iter(missing))
    needed = sum(pointers[oid] for oid in missing)
    target.objects_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.objects_dir).free
    if needed > free:
        raise TransferError(
            f"{missing[first]}: {len(missing)} Git LFS object(s) to download ({needed} bytes, "
            f"e.g. {first}) do not fit the {free} bytes free in {target.objects_dir}"
        )
    refs = [ObjectRef(oid, pointers[oid]) for oid in missing]
    try:
        stats = download(repo, None, refs, store=target, label="Downloading Git LFS objects")
    except TransferError as exc:
        oid = next((o for o in missing if o in exc.failures), first)
        raise TransferError(
            f"{missing[oid]}: Git LFS object {oid} is not in {target.objects_dir} and could "
            f"not be downloaded: {exc}",
            remote=exc.remote,
            failures=exc.failures,
        ) from None
    return stats.bytes


def migrate_import(
    patterns: Sequence[str], refs: Sequence[str], *, everything: bool, out: TextIO
) -> int:
    """Rewrite the history of `refs` (default: the current branch; all branches and tags with
    `everything`) so every version of the LFS files matching `patterns` is git-theta metadata.

    Raises:
        ConfigError: no pattern, uncommitted changes, or a ref that is not a branch or tag.
        TransferError: an LFS object is neither local nor on the LFS server (refs stay
            untouched).
    """
    if not patterns:
        raise ConfigError("name the files to convert with --include PATTERN")
    repo = Repo()
    try:
        if repo.git("status", "--porcelain", "--untracked-files=no").strip():
            raise ConfigError("the work tree has uncommitted changes; commit or stash them first")
        full = _full_refs(repo, refs, everything)
        patterns = _lfs_patterns(repo, patterns)
        _, pointers, missing = survey_history(repo, patterns, full)
        downloaded = _download_missing(repo, pointers, missing)
        store = open_store(repo)
        before = _size(store.objects_dir)
        lfs_before = _size(repo.common_dir / "lfs" / "objects")
        with RepoContext(repo) as ctx:
            cleaner = Cleaner(ctx)
            try:
                report = import_history(repo, patterns, full, lambda f, p: cleaner.clean(f, p))
            finally:
                cleaner.close()
        pause_point("checkout")
        head = repo.git("rev-parse", "--symbolic-full-name", "HEAD").decode().strip()
        if head in full:
            repo.git("reset", "--hard", "-q")
        hooks.install(repo)  # pre-push uploads the new objects
        after = _size(store.objects_dir)
    finally:
        repo.close()
    if downloaded:
        out.write(f"Downloaded {len(missing)} Git LFS object(s), {downloaded} bytes.\n")
    out.write(
        f"Rewrote {report.commits} commit(s) on {', '.join(full)}: "
        f"{report.converted_versions} checkpoint version(s) converted.\n"
        f"Git LFS store: {lfs_before} bytes ({report.lfs_bytes} in the converted versions); "
        f"git-theta store: {before} -> {after} bytes.\n"
        "The LFS objects stay in .git/lfs/objects; `git lfs prune` reclaims them.\n"
    )
    return 0


def _distinct_tensor_bytes(repo: Repo, oids: Sequence[str]) -> tuple[int, int]:
    """(bytes of the distinct tensors, checkpoints that could not be read) over the local
    LFS objects `oids`: what the store holds before compression."""
    seen: set[tuple[str, str, tuple[int, ...]]] = set()
    total = unreadable = 0
    for oid in oids:
        path = lfs_object_path(repo, oid)
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            fmt = sniff_format(f.read(64), f)
            if fmt is None:
                unreadable += 1
                continue
            f.seek(0)
            try:
                for _, tensor in fmt.split(f, source=str(path)).tensors:
                    key = (content_hash(tensor.data), tensor.dtype, tuple(tensor.shape))
                    if key not in seen:
                        seen.add(key)
                        total += len(tensor.data)
            except CheckpointError:
                unreadable += 1
    return total, unreadable


def migrate_info(
    patterns: Sequence[str], refs: Sequence[str], *, everything: bool, out: TextIO
) -> int:
    """Report what `migrate import` would convert, and the tensor bytes it would store."""
    if not patterns:
        raise ConfigError("name the files to convert with --include PATTERN")
    repo = Repo()
    try:
        full = _full_refs(repo, refs, everything)
        patterns = _lfs_patterns(repo, patterns)
        report, pointers, missing = survey_history(repo, patterns, full)
        distinct, unreadable = _distinct_tensor_bytes(repo, list(pointers))
    finally:
        repo.close()
    out.write(
        f"{report.commits} commit(s) on {', '.join(full)}: {len(pointers)} Git LFS "
        f"version(s) of {', '.join(patterns)}, {report.lfs_bytes} bytes in Git LFS.\n"
        f"Distinct tensors across them: {distinct} bytes before compression "
        f"(what git-theta would store at most).\n"
    )
    if unreadable:
        out.write(f"{unreadable} version(s) are not checkpoints git-theta reads.\n")
    for oid, where in missing.items():
        out.write(f"not held locally (`migrate import` downloads it): {where}: {oid}\n")
    return 0
