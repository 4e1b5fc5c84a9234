"""A dense replacement: the chain continues from a whole new tensor.

git-theta itself starts a fresh entry instead of writing one, but a chain holding it is valid
(a plugin or another writer may), and it is the identity of the registry's `dense` name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from git_theta.errors import MetadataError
from git_theta.tensor import RawTensor
from git_theta.updates.base import Loader, UpdateType, object_ref

__all__ = ["Dense"]


class Dense(UpdateType):
    name = "dense"
    summary = "a whole new tensor (also: how changed tensors are stored by default)"

    def apply(self, before: RawTensor, record: Mapping[str, Any], load: Loader) -> RawTensor:
        after = load(object_ref(record, "object"))
        if after.dtype != before.dtype or after.shape != before.shape:
            raise MetadataError("a dense update has another dtype or shape than its parameter")
        return after
