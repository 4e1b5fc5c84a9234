"""Merge strategies: a literal registry, extended through the `git_theta.merges` entry points.

Built-in strategies are listed here by name; third-party ones are loaded on first lookup of a
name not built in. A name registered twice is an error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Callable

from git_theta.errors import ConfigError
from git_theta.merges.base import MergeStrategy, OptionDef, parse_options, split_options
from git_theta.registry import Registry

__all__ = [
    "BUILTIN",
    "MergeStrategy",
    "OptionDef",
    "all_strategies",
    "get_strategy",
    "parse_options",
    "split_options",
]

ENTRY_POINT_GROUP = "git_theta.merges"
_MERGEKIT = "https://github.com/arcee-ai/mergekit/blob/main/mergekit/merge_methods/"


def _take_ours() -> MergeStrategy:
    from git_theta.merges.picks import TakeOurs

    return TakeOurs()


def _take_theirs() -> MergeStrategy:
    from git_theta.merges.picks import TakeTheirs

    return TakeTheirs()


def _take_base() -> MergeStrategy:
    from git_theta.merges.picks import TakeBase

    return TakeBase()


def _average() -> MergeStrategy:
    from git_theta.merges.average import Average

    return Average()


def _task_arithmetic() -> MergeStrategy:
    from git_theta.merges.task_vectors import TaskVectorMerge

    return TaskVectorMerge(
        "task-arithmetic",
        "base + lambda * sum_i w_i (theta_i - base); weights default 1, not normalised.",
        "https://arxiv.org/abs/2212.04089",
        sparsify=None,
        consensus=False,
        normalize=False,
    )


def _ties() -> MergeStrategy:
    from git_theta.merges.task_vectors import TaskVectorMerge

    return TaskVectorMerge(
        "ties",
        "TIES: trim task vectors to density, elect signs, disjoint mean (mergekit convention).",
        "https://arxiv.org/abs/2306.01708",
        sparsify="magnitude",
        consensus=True,
        normalize=True,
    )


def _dare_linear() -> MergeStrategy:
    from git_theta.merges.task_vectors import TaskVectorMerge

    return TaskVectorMerge(
        "dare-linear",
        "DARE: drop task-vector entries at random, rescale by 1/density, add (seeded).",
        "https://arxiv.org/abs/2311.03099",
        sparsify="random",
        consensus=False,
        normalize=False,
    )


def _dare_ties() -> MergeStrategy:
    from git_theta.merges.task_vectors import TaskVectorMerge

    return TaskVectorMerge(
        "dare-ties",
        "DARE's random drop with TIES sign election (seeded); normalize=1: disjoint mean.",
        "https://arxiv.org/abs/2311.03099",
        sparsify="random",
        consensus=True,
        normalize=False,  # as mergekit registers dare_ties (registry.py)
    )


def _slerp() -> MergeStrategy:
    from git_theta.merges.slerp import Slerp

    return Slerp()


def _fisher() -> MergeStrategy:
    from git_theta.merges.fisher import FisherMerge

    return FisherMerge()


def _model_stock() -> MergeStrategy:
    from git_theta.merges.model_stock import ModelStock

    return ModelStock()


BUILTIN: dict[str, Callable[[], MergeStrategy]] = {
    "take-ours": _take_ours,
    "take-theirs": _take_theirs,
    "take-base": _take_base,
    "average": _average,
    "task-arithmetic": _task_arithmetic,
    "ties": _ties,
    "dare-linear": _dare_linear,
    "dare-ties": _dare_ties,
    "slerp": _slerp,
    "fisher": _fisher,
    "model-stock": _model_stock,
}

_REGISTRY: Registry[MergeStrategy] = Registry(
    "merge strategy", ENTRY_POINT_GROUP, MergeStrategy, BUILTIN
)


def get_strategy(name: str) -> MergeStrategy:
    """The strategy registered as `name`.

    Raises:
        ConfigError: no strategy has that name; the message lists the valid ones.
    """
    strategy = _REGISTRY.find(name)
    if strategy is None and name in _legacy_names():
        from git_theta.merges.legacy import LEGACY_NAMES, Preset

        target, defaults = LEGACY_NAMES[name]
        return Preset(name, get_strategy(target), defaults)
    if strategy is None:
        raise ConfigError(
            f"unknown merge strategy {name!r} (valid: {', '.join(_REGISTRY.names())})"
        )
    return strategy


def _legacy_names() -> frozenset[str]:
    from git_theta.merges.legacy import LEGACY_NAMES

    return frozenset(LEGACY_NAMES)


def all_strategies() -> dict[str, MergeStrategy]:
    """Every registered strategy by name, built-in first."""
    return dict(_REGISTRY.items())
