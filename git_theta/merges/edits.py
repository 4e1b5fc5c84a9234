"""Task-vector edits with `merge-models`: negation, addition, analogies (Ilharco et al.).

Git's three-way rule takes a parameter changed by one side only as that side's version. For a
merge that is right; for task arithmetic it is not: `base - tau` (forgetting) or
`base + 0.5 tau_1 + 0.5 tau_2` must scale every task vector, including a parameter only one
model changed. So when `merge-models` runs a task-vector strategy (task arithmetic, TIES,
DARE) against a base, every parameter some model changed goes to the strategy, and one model
is enough (negation). Parameters added or deleted, or of dtypes that are not merged
numerically, keep the three-way rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from git_theta.compute import MERGEABLE_DTYPES
from git_theta.merges.base import MergeStrategy
from git_theta.merges.three_way import Conflict, ThreeWay
from git_theta.metadata import Metadata

__all__ = ["every_change", "takes_task_vectors"]


def takes_task_vectors(strategy: MergeStrategy) -> bool:
    """Whether `strategy` is a function of the task vectors sides - base (task arithmetic,
    TIES, DARE, and git-theta 0.2's names for them)."""
    from git_theta.merges.legacy import Preset
    from git_theta.merges.task_vectors import TaskVectorMerge

    while isinstance(strategy, Preset):
        strategy = strategy.target
    return isinstance(strategy, TaskVectorMerge)


def every_change(plan: ThreeWay, base: Metadata, sides: Sequence[Metadata]) -> ThreeWay:
    """`plan` with every settled parameter that differs from `base` (same dtype and shape, a
    float dtype, present in every side) turned into a conflict for the strategy."""
    merged = dict(plan.merged)
    conflicts = list(plan.conflicts)
    for name, entry in plan.merged.items():
        o = base.params.get(name)
        if o is None or (o.hash, o.dtype, o.shape) == (entry.hash, entry.dtype, entry.shape):
            continue
        entries = tuple(s.params.get(name) for s in sides)
        if o.dtype not in MERGEABLE_DTYPES or any(
            e is None or (e.dtype, e.shape) != (o.dtype, o.shape) for e in entries
        ):
            continue
        del merged[name]
        conflicts.append(Conflict(name, "both-modified", o, entries))
    conflicts.sort(key=lambda c: c.name)
    return ThreeWay(merged, conflicts)
