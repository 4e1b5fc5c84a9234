"""What `Repository.load` and `Repository.parameters` hand out."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from git_theta.frameworks import Framework, to_framework
from git_theta.metadata import Metadata, ParamEntry
from git_theta.tensor import RawTensor

__all__ = ["Checkpoint", "ParamInfo"]


class ParamInfo(NamedTuple):
    """One parameter of a tracked checkpoint, as its metadata records it.

    Attributes:
        name: the parameter's name in the checkpoint.
        dtype: safetensors dtype name (`F32`, `BF16`, ...).
        shape: dimensions.
        hash: content hash of the tensor's raw bytes (`xxh3_128:<hex>`).
        update_type: how it is stored: `dense`, or the last update of its chain
            (`low-rank`, `ia3`, `sparse`, ...).
        stored_bytes: the size of every object it needs (shared objects counted in full; of a
            pack, only its own member).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    hash: str
    update_type: str
    stored_bytes: int

    @classmethod
    def of(cls, name: str, entry: ParamEntry) -> ParamInfo:
        stored = entry.stored_bytes
        return cls(name, entry.dtype, entry.shape, entry.hash, entry.update_type, stored)


class Checkpoint(Mapping[str, Any]):
    """A tracked checkpoint at one revision, read lazily: a parameter's objects are read (and
    fetched from the remote when absent) only when it is looked up, so a caller that reads two
    tensors of a 10 GB model reads two tensors' objects.

    Values are numpy arrays or torch tensors (per `framework`) that own their memory.
    """

    def __init__(
        self,
        path: str,
        revision: str | None,
        meta: Metadata,
        framework: Framework,
        load: Callable[[str, ParamEntry], RawTensor],
    ) -> None:
        self._load = load
        self.path = path
        #: The commit it was read from (None: the index).
        self.revision = revision
        self.format = meta.format
        self._meta = meta
        self._framework = framework

    def __getitem__(self, name: str) -> Any:
        entry = self._meta.params[name]
        tensor = self._load(name, entry)
        return to_framework(tensor, self._framework, where=f"{self.path}: parameter {name!r}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta.params)

    def __len__(self) -> int:
        return len(self._meta.params)

    def __repr__(self) -> str:
        at = self.revision[:12] if self.revision else "index"
        return f"<Checkpoint {self.path}@{at}: {len(self)} parameters, {self.format}>"

    @property
    def parameters(self) -> dict[str, ParamInfo]:
        """What each parameter is, without reading any tensor."""
        return {name: ParamInfo.of(name, e) for name, e in self._meta.params.items()}

    def to_dict(self) -> dict[str, Any]:
        """Every parameter, read now."""
        return {name: self[name] for name in self}
