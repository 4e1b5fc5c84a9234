"""Which objects a set of commits references, read from the metadata blobs in their trees.

Nothing is remembered on the side: a merge, a rebase or a fresh clone sees exactly what git's
own history says. Two questions are asked of git:

- `snapshot(revs)`: every metadata file in the trees of `revs` (what a checkout needs);
- `history(revs, exclude)`: every metadata blob reachable from `revs` but not from `exclude`
  (`git rev-list --objects`: what a push of `revs` sends beyond what the remote has).

A blob is metadata when it starts with the metadata magic and parses; other blobs are skipped
without being read past their size (`git cat-file --batch-check`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from git_theta import metadata as md
from git_theta.errors import MetadataError
from git_theta.git.repo import Repo
from git_theta.metadata import ObjectRef

__all__ = ["Referenced", "boundary", "history", "metadata_blobs", "snapshot"]

# Blobs up to this size are read and checked whatever their path: metadata of a checkpoint with
# a few thousand parameters fits. Larger blobs are read only at paths tracked by git-theta, so
# a push never reads a repository's big non-checkpoint files.
ALWAYS_READ_BYTES = 4 << 20
THETA_FILTER = "theta"


@dataclass
class Referenced:
    """Objects, in first-seen order, and where each is used.

    Attributes:
        refs: every object, once.
        users: oid -> ["path: parameter", ...] for error messages.
    """

    refs: list[ObjectRef] = field(default_factory=list)
    users: dict[str, list[str]] = field(default_factory=dict)

    def without(self, other: Referenced) -> Referenced:
        """These objects less those `other` references."""
        drop = set(other.users)
        kept = [ref for ref in self.refs if ref.oid not in drop]
        return Referenced(kept, {ref.oid: self.users[ref.oid] for ref in kept})

    def add(self, path: str, meta: md.Metadata) -> None:
        entries = ([("(layout)", meta.layout)] if meta.layout else []) + sorted(meta.params.items())
        for name, entry in entries:
            for ref in entry.objects():
                where = self.users.get(ref.oid)
                if where is None:
                    self.refs.append(ref)
                    self.users[ref.oid] = where = []
                label = f"{path}: {name}"
                if label not in where:
                    where.append(label)


def snapshot(repo: Repo, revs: Sequence[str]) -> Referenced:
    """Objects referenced by the metadata files in the trees of `revs`."""
    blobs: dict[str, str] = {}
    for rev in revs:
        raw = repo.git("ls-tree", "-r", "-z", "--full-tree", rev)
        for record in raw.split(b"\0"):
            if not record:
                continue
            info, path = record.split(b"\t", 1)
            _mode, kind, oid = info.split()
            if kind == b"blob":
                blobs.setdefault(oid.decode(), path.decode("utf-8", "replace"))
    return _read(repo, blobs)


def history(repo: Repo, revs: Sequence[str], exclude: Sequence[str] = ()) -> Referenced:
    """Objects referenced by metadata blobs reachable from `revs` and not from `exclude`
    (revisions, or rev-list options such as `--remotes=origin`)."""
    if not revs:
        return Referenced()
    args = ["rev-list", "--objects", *revs]
    if exclude:
        args += ["--not", *exclude]
    blobs: dict[str, str] = {}
    for line in repo.git(*args).decode("utf-8", "replace").splitlines():
        oid, _, path = line.partition(" ")
        if path:  # commits have no path; trees and blobs do (the root tree has "")
            blobs.setdefault(oid, path)
    return _read(repo, blobs)


def boundary(repo: Repo, revs: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The excluded commits that border the history of `revs` (their trees are what the
    remote already has next to what is being pushed)."""
    if not revs or not exclude:
        return []
    out = repo.git("rev-list", "--boundary", *revs, "--not", *exclude).decode()
    return [line[1:] for line in out.splitlines() if line.startswith("-")]


def _read(repo: Repo, blobs: dict[str, str]) -> Referenced:
    found = Referenced()
    for oid, meta in metadata_blobs(repo, blobs).items():
        found.add(blobs[oid], meta)
    return found


def metadata_blobs(repo: Repo, blobs: Mapping[str, str]) -> dict[str, md.Metadata]:
    """blob id -> its metadata, for the blobs of `blobs` (blob id -> path) that are git-theta
    metadata; one `cat-file --batch-check` and one `cat-file --batch` however many."""
    found: dict[str, md.Metadata] = {}
    candidates = _small_blobs(repo, blobs)
    if not candidates:
        return found
    out = repo.git("cat-file", "--batch", input="".join(f"{o}\n" for o in candidates).encode())
    pos = 0
    for oid in candidates:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        size = int(header[2])
        data = out[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
        if not md.looks_like_metadata(data[: len(md.MAGIC)]):
            continue
        try:
            found[oid] = md.decode(data, source=f"{oid}:{blobs[oid]}")
        except MetadataError:
            continue  # a file that only looks like ours names no objects we could send
    return found


def _small_blobs(repo: Repo, blobs: Mapping[str, str]) -> list[str]:
    """The blobs that could be metadata: small ones, and larger ones (up to the metadata limit)
    at paths the work tree's attributes route through git-theta."""
    if not blobs:
        return []
    out = repo.git(
        "cat-file",
        "--batch-check=%(objectname) %(objecttype) %(objectsize)",
        input="".join(f"{o}\n" for o in blobs).encode(),
    )
    small: list[str] = []
    large: list[str] = []
    for oid, kind, size in _triples(out.decode().splitlines()):
        if kind != "blob" or not len(md.MAGIC) <= int(size) <= md.MAX_METADATA_BYTES:
            continue
        (small if int(size) <= ALWAYS_READ_BYTES else large).append(oid)
    if large:
        tracked = _tracked_paths(repo, {blobs[oid] for oid in large})
        small += [oid for oid in large if blobs[oid] in tracked]
    return small


def _tracked_paths(repo: Repo, paths: set[str]) -> set[str]:
    out = repo.git(
        "check-attr", "--stdin", "-z", "filter", input="".join(f"{p}\0" for p in paths).encode()
    )
    fields = out.decode("utf-8", "replace").split("\0")
    return {fields[i] for i in range(0, len(fields) - 2, 3) if fields[i + 2] == THETA_FILTER}


def _triples(lines: Iterable[str]) -> Iterable[tuple[str, str, str]]:
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            yield parts[0], parts[1], parts[2]
