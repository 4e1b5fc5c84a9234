"""Where the `fisher` strategy finds each side's Fisher tensors, and how it reads them.

Convention: the Fisher tensors of checkpoint `dir/model.safetensors` (any format) are the
safetensors file `dir/model.fisher.safetensors`, whose tensor names and shapes are the
checkpoint's parameter names and shapes. A side read from a commit (`git merge`, `git theta
resolve`, a revision given to `merge-models`) takes that file from the same commit; a side read
from a file on disk takes it from next to that file. The `fisher=A,B,...` option names the
files instead, one per side, on disk.

A Fisher file committed through git-theta (it matches a tracked pattern) is metadata in git;
its tensors are then read from the object store like any parameter's.
"""

from __future__ import annotations

import mmap
import os
import posixpath
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from git_theta import metadata as md
from git_theta.errors import CheckpointError, ConfigError, MergeError
from git_theta.formats.safetensors import parse_header
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata, ParamEntry
from git_theta.tensor import RawTensor

__all__ = ["FisherFile", "Origin", "fisher_name", "open_fisher_files"]

FISHER_SUFFIX = ".fisher.safetensors"
_HEADER_LEN = 8  # safetensors: a little-endian u64 header size, then the JSON header

Loader = Callable[[ParamEntry, str, str], RawTensor]  # (entry, file, parameter) -> tensor


@dataclass(frozen=True)
class Origin:
    """Where one side of a merge came from: `path` in commit `rev`, or on disk when rev is None."""

    path: str
    rev: str | None = None

    def describe(self) -> str:
        return f"{self.rev}:{self.path}" if self.rev else self.path


def fisher_name(path: str) -> str:
    """`dir/model.safetensors` -> `dir/model.fisher.safetensors` (the last suffix replaced)."""
    head, name = posixpath.split(path)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return posixpath.join(head, stem + FISHER_SUFFIX)


class FisherFile:
    """One side's Fisher tensors, read per parameter when asked."""

    def __init__(self, source: str, read: Callable[[str], RawTensor | None]) -> None:
        self.source = source
        self._read = read

    def tensor(self, name: str, like: ParamEntry) -> RawTensor:
        """The Fisher tensor of parameter `name`, checked against the parameter's shape.

        Raises:
            MergeError: the file has no such tensor, or it is of another shape.
        """
        tensor = self._read(name)
        if tensor is None:
            raise MergeError(f"{self.source}: no Fisher tensor for parameter {name}")
        if tensor.shape != like.shape:
            raise MergeError(
                f"{self.source}: Fisher tensor for parameter {name} is {list(tensor.shape)}, "
                f"the parameter is {list(like.shape)}"
            )
        return tensor


def _from_safetensors(data: bytes | mmap.mmap, source: str) -> Callable[[str], RawTensor | None]:
    if len(data) < _HEADER_LEN:
        raise CheckpointError(f"{source}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:_HEADER_LEN])
    if _HEADER_LEN + n > len(data):
        raise CheckpointError(f"{source}: not a safetensors file (header runs past the end)")
    entries = {e.name: e for e in parse_header(data[_HEADER_LEN : _HEADER_LEN + n], source=source)}
    start = _HEADER_LEN + n
    if entries and start + max(e.end for e in entries.values()) > len(data):
        raise CheckpointError(f"{source}: safetensors file is truncated")

    def read(name: str) -> RawTensor | None:
        e = entries.get(name)
        if e is None:
            return None
        return RawTensor(e.dtype, e.shape, bytes(data[start + e.begin : start + e.end]))

    return read


def _from_metadata(meta: Metadata, source: str, load: Loader) -> Callable[[str], RawTensor | None]:
    def read(name: str) -> RawTensor | None:
        entry = meta.params.get(name)
        return None if entry is None else load(entry, source, name)

    return read


def _open_blob(
    data: bytes, source: str, load: Loader, fetch: Callable[[Metadata, str], None] | None
) -> FisherFile:
    if md.looks_like_metadata(data[:64]):
        meta = md.decode(data, source=source)
        if meta.format != "safetensors":
            raise CheckpointError(f"{source}: a Fisher file must be safetensors, not {meta.format}")
        if fetch is not None:
            fetch(meta, source)
        return FisherFile(source, _from_metadata(meta, source, load))
    return FisherFile(source, _from_safetensors(data, source))


def _open_disk(path: str) -> FisherFile:
    try:
        with open(path, "rb") as f:
            # A map reads only the tensors asked for, so a model-sized file costs little memory.
            data: bytes | mmap.mmap = (
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                if os.fstat(f.fileno()).st_size
                else b""
            )
    except OSError as exc:
        raise MergeError(f"{path}: cannot read the Fisher file: {exc.strerror}") from None
    return FisherFile(path, _from_safetensors(data, path))


def open_fisher_files(
    option: str,
    origins: Sequence[Origin | None],
    *,
    repo: Repo | None,
    load: Loader,
    fetch: Callable[[Metadata, str], None] | None = None,
    unknown: str = "",
) -> list[FisherFile]:
    """One FisherFile per side: the files named in `option` (comma-separated), else the
    convention applied to each side's origin.

    Args:
        origins: where each side came from; None for a side whose commit is unknown.
        unknown: what to tell the user when a side's origin is None.

    Raises:
        ConfigError: `option` names the wrong number of files.
        MergeError: a Fisher file is absent or unreadable (the message names it).
    """
    if option:
        paths = [p for p in option.split(",") if p]
        if len(paths) != len(origins):
            raise ConfigError(
                f"merge option fisher={option!r} needs {len(origins)} files, one per side"
            )
        return [_open_disk(p) for p in paths]
    files = []
    for origin in origins:
        if origin is None:
            raise MergeError(unknown or "fisher: the commit of a side is unknown")
        name = fisher_name(origin.path)
        if origin.rev is None:
            files.append(_open_disk(name))
            continue
        if repo is None:
            raise MergeError(f"fisher: {origin.rev}:{name} needs a repository")
        spec = f"{origin.rev}:{name}"
        data = repo.read_blob(spec)
        if data is None:
            raise MergeError(
                f"{spec}: no Fisher file for {origin.path} in {origin.rev}; commit it there or "
                "name the files with the option fisher=OURS,THEIRS"
            )
        files.append(_open_blob(data, spec, load, fetch))
    return files
