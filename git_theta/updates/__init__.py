"""Update types: a literal registry, extended through the `git_theta.updates` entry points.

A parameter's entry is a dense object plus a chain of updates (low-rank factors, IA3 vectors,
sparse indices+values, lossless XOR deltas). This table says which types exist; `rebuild` applies a chain and
`policy` decides, when a checkpoint is cleaned, how a changed tensor is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from git_theta.errors import MetadataError
from git_theta.registry import Registry
from git_theta.updates.base import Inferred, Loader, UpdateType, Writer

__all__ = [
    "BUILTIN",
    "Inferred",
    "Loader",
    "UpdateType",
    "Writer",
    "all_update_types",
    "get_update_type",
]

ENTRY_POINT_GROUP = "git_theta.updates"


def _dense() -> UpdateType:
    from git_theta.updates.dense import Dense

    return Dense()


def _sparse() -> UpdateType:
    from git_theta.updates.sparse import Sparse

    return Sparse()


def _low_rank() -> UpdateType:
    from git_theta.updates.low_rank import LowRank

    return LowRank()


def _ia3() -> UpdateType:
    from git_theta.updates.ia3 import IA3

    return IA3()


def _delta() -> UpdateType:
    from git_theta.updates.delta import Delta

    return Delta()


BUILTIN: dict[str, Callable[[], UpdateType]] = {
    "dense": _dense,
    "sparse": _sparse,
    "delta": _delta,
    "low-rank": _low_rank,
    "ia3": _ia3,
}

_REGISTRY: Registry[UpdateType] = Registry("update type", ENTRY_POINT_GROUP, UpdateType, BUILTIN)


def get_update_type(name: str) -> UpdateType:
    """The update type `name`.

    Raises:
        MetadataError: no such type; the message lists the valid names.
    """
    found = _REGISTRY.find(name)
    if found is None:
        raise MetadataError(
            f"unknown update type {name!r} (known: {', '.join(_REGISTRY.names())}); "
            "a newer git-theta or a plugin may be needed"
        )
    return found


def all_update_types() -> list[UpdateType]:
    return list(_REGISTRY)
