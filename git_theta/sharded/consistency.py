"""Does a shard index agree with its shards? Every parameter the `weight_map` names is in
the shard it names, every shard it names holds only parameters it maps there, and
`metadata.total_size` is the sum of their tensors' bytes (as `save_pretrained` computes it).

Shards are read as they are at one endpoint (a revision, the index or the work tree): from
git-theta metadata when tracked, else from the safetensors header; the tensors' bytes are
never read.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from pathlib import Path

from git_theta import metadata as md
from git_theta.errors import CheckpointError, MetadataError
from git_theta.formats.safetensors import MAX_HEADER_BYTES, parse_header
from git_theta.git.repo import Repo
from git_theta.sharded.index import INDEX_SUFFIX, ShardIndex, parse_index

__all__ = [
    "ShardContents",
    "check_index",
    "index_problems",
    "problems_of",
    "read_shard",
    "shard_contents",
    "shard_tensors",
]

ShardContents = dict[str, int]
"""A shard's parameters and their sizes in bytes."""


def shard_tensors(data: bytes, *, source: str) -> dict[str, tuple[int, int]]:
    """Each parameter of a shard given as git-theta metadata or safetensors bytes (its header
    is enough), with its size in bytes and its number of elements.

    Raises:
        CheckpointError: neither (an LFS pointer, another format), or a malformed header.
    """
    if md.looks_like_metadata(data[: len(md.MAGIC)]):
        try:
            meta = md.decode(data, source=source)
        except MetadataError as exc:
            raise CheckpointError(str(exc)) from None
        return {name: (e.nbytes, math.prod(e.shape)) for name, e in meta.params.items()}
    if len(data) < 8:
        raise CheckpointError(f"{source}: not a safetensors shard (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise CheckpointError(f"{source}: not a safetensors shard (header length {n})")
    entries = parse_header(data[8 : 8 + n], source=source)
    return {e.name: (e.end - e.begin, math.prod(e.shape)) for e in entries}


def shard_contents(data: bytes, *, source: str) -> ShardContents:
    """The parameters of a shard and their sizes in bytes (see shard_tensors)."""
    return {name: size for name, (size, _) in shard_tensors(data, source=source).items()}


def read_shard(repo: Repo, rev: str | None, path: str, *, worktree: bool) -> bytes | None:
    """A shard's bytes at an endpoint (only the header from the work tree); None if absent."""
    if not worktree:
        return repo.read_blob(f"{rev}:{path}" if rev else f":{path}")
    file = repo.worktree / path
    try:
        with open(file, "rb") as f:
            head = f.read(8)
            if md.looks_like_metadata(head):
                return head + f.read()
            if len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                return head + f.read(min(n, MAX_HEADER_BYTES + 1))
            return head
    except (FileNotFoundError, NotADirectoryError):
        return None


def index_problems(index: ShardIndex, shards: Mapping[str, ShardContents | str]) -> list[str]:
    """Every disagreement between `index` and its shards, one line each.

    Args:
        shards: shard file name -> its contents, or a one-line reason it cannot be read.
    """
    where = index.path
    problems: list[str] = []
    total = 0
    for shard in index.shards:
        contents = shards.get(shard, "missing")
        if isinstance(contents, str):
            problems.append(f"{where}: shard {shard}: {contents}")
            continue
        for name, size in contents.items():
            mapped = index.weight_map.get(name)
            if mapped is None:
                problems.append(f"{where}: {shard} holds {name!r}, which weight_map does not name")
            elif mapped != shard:
                problems.append(
                    f"{where}: {shard} holds {name!r}, which weight_map puts in {mapped}"
                )
            else:
                total += size
    for name, shard in index.weight_map.items():
        held = shards.get(shard)
        if isinstance(held, dict) and name not in held:
            problems.append(f"{where}: weight_map puts {name!r} in {shard}, which does not hold it")
    readable = all(isinstance(shards.get(s), dict) for s in index.shards)
    if readable and index.total_size is not None and index.total_size != total:
        problems.append(
            f"{where}: metadata.total_size is {index.total_size}, the shards' tensors hold {total}"
        )
    return problems


def _index_paths(repo: Repo, rev: str | None, *, worktree: bool) -> list[str]:
    if rev:
        out = repo.git("ls-tree", "-r", "-z", "--name-only", rev)
    elif worktree:
        out = repo.git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    else:
        out = repo.git("ls-files", "-z")
    names = [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]
    return sorted({p for p in names if p.endswith(INDEX_SUFFIX)})


def check_index(repo: Repo, rev: str | None, *, worktree: bool = False) -> list[str]:
    """Problems of every shard index at an endpoint: revision `rev`, else the index (or the
    work tree when `worktree`)."""
    problems: list[str] = []
    for path in _index_paths(repo, rev, worktree=worktree):
        raw = (
            _read_file(repo.worktree / path)
            if worktree
            else repo.read_blob(f"{rev}:{path}" if rev else f":{path}")
        )
        if raw is None:
            continue
        problems += problems_of(repo, path, raw, rev, worktree=worktree)
    return problems


def problems_of(repo: Repo, path: str, raw: bytes, rev: str | None, *, worktree: bool) -> list[str]:
    """Problems of the index `raw` at `path` against its shards at an endpoint."""
    try:
        index = parse_index(raw, path=path)
    except CheckpointError as exc:
        return [str(exc)]
    shards: dict[str, ShardContents | str] = {}
    for shard in index.shards:
        full = index.shard_path(shard)
        data = read_shard(repo, rev, full, worktree=worktree)
        if data is None:
            shards[shard] = "missing"
            continue
        try:
            shards[shard] = shard_contents(data, source=full)
        except CheckpointError as exc:
            shards[shard] = f"cannot be read ({exc})"
    return index_problems(index, shards)


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
