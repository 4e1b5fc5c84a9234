"""`git theta migrate import --include PATTERN [--everything | REF...]`: rewrite Git LFS history
into git-theta (git_theta/git/lfs_migrate.py), then check the work tree out again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from git_theta.clean import Cleaner
from git_theta.context import RepoContext
from git_theta.errors import CheckpointError, ConfigError
from git_theta.formats import sniff_format
from git_theta.git import hooks
from git_theta.git.lfs_migrate import import_history, lfs_object_path, survey_history
from git_theta.git.repo import Repo
from git_theta.store import open_store
from git_theta.tensor import content_hash

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


def _require_lfs_lines(repo: Repo, patterns: Sequence[str]) -> None:
    """Each pattern must be an LFS line of `.gitattributes` at HEAD: that line is what the
    rewrite turns into git-theta's, so the converted files get our filter in every commit."""
    text = (repo.read_blob("HEAD:.gitattributes") or b"").decode("utf-8", "replace")
    lfs = {f.split()[0] for f in text.splitlines() if f.split()[1:] and "filter=lfs" in f.split()}
    for pattern in patterns:
        if pattern not in lfs:
            raise ConfigError(
                f"{pattern!r}: no `{pattern} filter=lfs` line in .gitattributes at HEAD; "
                "--include takes a pattern exactly as .gitattributes writes it"
            )


def migrate_import(
    patterns: Sequence[str], refs: Sequence[str], *, everything: bool, out: TextIO
) -> int:
    """Rewrite the history of `refs` (default: the current branch; all branches and tags with
    `everything`) so every version of the LFS files matching `patterns` is git-theta metadata.

    Raises:
        ConfigError: no pattern, uncommitted changes, or a ref that is not a branch or tag.
        GitThetaError: an LFS object is missing locally (refs stay untouched).
    """
    if not patterns:
        raise ConfigError("name the files to convert with --include PATTERN")
    repo = Repo()
    try:
        if repo.git("status", "--porcelain", "--untracked-files=no").strip():
            raise ConfigError("the work tree has uncommitted changes; commit or stash them first")
        full = _full_refs(repo, refs, everything)
        _require_lfs_lines(repo, patterns)
        store = open_store(repo)
        before = _size(store.objects_dir)
        lfs_before = _size(repo.common_dir / "lfs" / "objects")
        with RepoContext(repo) as ctx:
            cleaner = Cleaner(ctx)
            try:
                report = import_history(repo, patterns, full, lambda f, p: cleaner.clean(f, p))
            finally:
                cleaner.close()
        head = repo.git("rev-parse", "--symbolic-full-name", "HEAD").decode().strip()
        if head in full:
            repo.git("reset", "--hard", "-q")
        hooks.install(repo)  # pre-push uploads the new objects
        after = _size(store.objects_dir)
    finally:
        repo.close()
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
    for line in missing:
        out.write(f"missing locally (run `git lfs fetch --all`): {line}\n")
    return 0
