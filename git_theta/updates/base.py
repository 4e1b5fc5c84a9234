"""The contract of an update type: how one link of a parameter's update chain changes a tensor.

A parameter entry is a dense base object plus a chain of update records (metadata-spec.md). Each
record names its type; the type turns the tensor before it into the tensor after it. Types that
round (low-rank, IA3) compute once in float32 and cast back to the parameter's dtype, so the
rebuild is the same on every checkout; they also say how far a tensor merged by other software
(PEFT) may sit from that rebuild and still count as the same version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from git_theta.metadata import ObjectRef
from git_theta.tensor import RawTensor

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Inferred", "Loader", "UpdateType", "Writer", "object_ref"]

# Reads an object of the store as a tensor (verified against its oid).
Loader = Callable[[ObjectRef], RawTensor]
# Writes a tensor to the store and returns its reference.
Writer = Callable[[RawTensor], ObjectRef]


def object_ref(record: Mapping[str, Any], key: str) -> ObjectRef:
    """The object reference under `key` of an update record, checked by `ObjectRef.parse`.

    The only way an update type (built-in or plugin) turns a record into an object to load:
    nothing else in a record, which comes from a repository, ever reaches the store.

    Raises:
        KeyError: the record has no `key`.
        MetadataError: its value is not exactly `{"oid": <64 hex>, "size": <int>}`.
    """
    return ObjectRef.parse(record[key], where=f"{record.get('type')} update field {key}")


@dataclass(frozen=True)
class Inferred:
    """An update worked out from two versions of a tensor.

    Attributes:
        record: the update record for the metadata.
        exact: whether applying it gives the new version bit for bit.
        note: what the user should know (the error a lossy update makes), or "".
    """

    record: Mapping[str, Any]
    exact: bool
    note: str = ""


class UpdateType(ABC):
    """One kind of update. Members: `name` (the record's `type`), `summary` (one line for help),
    `apply` (rebuild), and optionally `slack` (rounding allowance) and `infer` (from a diff)."""

    name: str
    summary: str

    @abstractmethod
    def apply(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> RawTensor:
        """The tensor after this update, in `before`'s dtype and shape."""

    def slack(
        self, before: RawTensor, record: Mapping[str, Any], load: Loader
    ) -> np.ndarray | None:
        """Per element, how far another implementation's result may be from `apply`'s and
        still be this version (float64, `before`'s shape); None when only bit equality counts."""
        return None

    def infer(
        self, before: RawTensor, after: RawTensor, write: Writer, options: Mapping[str, Any]
    ) -> Inferred | None:
        """An update taking `before` to (about) `after`, its objects written with `write`;
        None when this type cannot express the change. Types that need a side file (an
        adapter) do not infer."""
        return None
