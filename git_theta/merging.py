"""Merge two versions of a tracked checkpoint against their base, as metadata.

The three-way rules (merges/three_way.py) settle most parameters without reading a tensor; a
strategy (merges/) resolves the parameters changed on both sides. Merged tensors go into the
object store; the result is new metadata. Used by the merge driver and `git theta resolve`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from git_theta import metadata as md
from git_theta.errors import CorruptObjectError, MergeError, MissingObjectError
from git_theta.git.repo import Repo
from git_theta.merges import MergeStrategy, get_strategy, parse_options, split_options
from git_theta.merges.base import resolve_weights
from git_theta.merges.three_way import Conflict, merged_layout, three_way
from git_theta.metadata import Metadata, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash

__all__ = [
    "MergeChoice",
    "MergeResult",
    "configured_choice",
    "merge_metadata",
    "read_side",
    "unresolved_message",
]

STRATEGY_ENV = "GIT_THETA_MERGE_STRATEGY"
OPTIONS_ENV = "GIT_THETA_MERGE_OPTIONS"
STRATEGY_CONFIG = "theta.merge.strategy"
OPTIONS_CONFIG = "theta.merge.options"
STRATEGY_ATTRIBUTE = "theta-merge"


@dataclass(frozen=True)
class MergeChoice:
    """A strategy with its parsed options, and the parameters (globs) it applies to."""

    strategy: MergeStrategy
    options: Mapping[str, Any]
    params: tuple[str, ...] = ()

    @classmethod
    def make(
        cls, name: str, raw_options: Mapping[str, str], params: Sequence[str] = ()
    ) -> MergeChoice:
        strategy = get_strategy(name)
        return cls(strategy, parse_options(strategy, raw_options), tuple(params))

    def applies_to(self, name: str) -> bool:
        return not self.params or any(fnmatch.fnmatchcase(name, p) for p in self.params)


@dataclass(frozen=True)
class MergeResult:
    """The merged metadata (valid only when nothing is unresolved) and what is left."""

    metadata: Metadata
    unresolved: list[Conflict]


def configured_choice(repo: Repo, path: str) -> MergeChoice | None:
    """The strategy configured for `path`: $GIT_THETA_MERGE_STRATEGY, else the `theta-merge`
    attribute, else `git config theta.merge.strategy`; options from $GIT_THETA_MERGE_OPTIONS,
    else `theta.merge.options`. None when no strategy is configured.

    Raises:
        ConfigError: the strategy or an option is unknown or malformed.
    """
    name = (
        os.environ.get(STRATEGY_ENV)
        or repo.check_attr(STRATEGY_ATTRIBUTE, path)
        or repo.config_get(STRATEGY_CONFIG)
    )
    if not name or name == "set":  # a bare `theta-merge` attribute names nothing
        return None
    text = os.environ.get(OPTIONS_ENV)
    if text is None:
        text = repo.config_get(OPTIONS_CONFIG) or ""
    return MergeChoice.make(name, split_options(text))


def read_side(data: bytes | None, source: str) -> Metadata | None:
    """Metadata from a version's bytes; None for an absent or empty version.

    Raises:
        MergeError: the version is not git-theta metadata (e.g. committed without the filter).
    """
    if not data:
        return None
    try:
        return md.decode(data, source=source)
    except md.NotMetadataError:
        raise MergeError(
            f"{source} is not git-theta metadata (committed without the filter?); "
            "merge it by hand or re-add it with git-theta installed"
        ) from None


def merge_metadata(
    base: Metadata | None,
    ours: Metadata,
    theirs: Metadata,
    *,
    choice: MergeChoice | None,
    store: ObjectStore,
    path: str,
    fetch: Callable[[Metadata], None] | None = None,
) -> MergeResult:
    """Merge `ours` and `theirs` against `base`; conflicts go to `choice` where it applies.

    Raises:
        MergeError: a conflicting parameter's sides differ in shape or dtype (or differ from
            the base a task-vector strategy needs); nothing is written for it.
        MissingObjectError, CorruptObjectError: a tensor the strategy needs cannot be read.

    Args:
        fetch: called once with metadata listing every entry a numeric strategy may read, to
            download absent objects first (FilterSession.check_objects).
    """
    if ours.format != theirs.format:
        raise MergeError(
            f"{path}: our side is {ours.format} and theirs is {theirs.format}; convert one first"
        )
    plan = three_way(base, ours, theirs)
    if fetch is not None and choice is not None and choice.strategy.pick is None:
        needed = {
            f"{c.name} ({side})": e
            for c in plan.conflicts
            if choice.applies_to(c.name)
            for side, e in (("base", c.base), ("ours", c.ours), ("theirs", c.theirs))
            if e is not None
        }
        if needed:
            fetch(Metadata(ours.format, None, needed))
    params = dict(plan.merged)
    unresolved: list[Conflict] = []
    for conflict in plan.conflicts:
        if choice is None or not choice.applies_to(conflict.name):
            unresolved.append(conflict)
            continue
        outcome = _resolve(conflict, choice, store, path)
        if isinstance(outcome, Conflict):
            unresolved.append(outcome)
        elif outcome is not None:
            params[conflict.name] = outcome
    layout = merged_layout(params, *[s for s in (ours, theirs) if s.format == ours.format])
    return MergeResult(Metadata(ours.format, layout, params), unresolved)


def _resolve(
    conflict: Conflict, choice: MergeChoice, store: ObjectStore, path: str
) -> ParamEntry | Conflict | None:
    """The merged entry (None: deleted), or the conflict with the reason it stays one."""
    from git_theta.merges.dtypes import MERGEABLE_DTYPES, from_compute, to_compute

    strategy, name = choice.strategy, conflict.name
    if strategy.pick is not None:
        return {"ours": conflict.ours, "theirs": conflict.theirs, "base": conflict.base}[
            strategy.pick
        ]
    a, b, o = conflict.ours, conflict.theirs, conflict.base
    if a is None or b is None:
        return dataclasses.replace(conflict, reason=f"{strategy.name} cannot merge a deletion")
    if (a.dtype, a.shape) != (b.dtype, b.shape):
        raise MergeError(
            f"{path}: parameter {name} is {a.dtype}{list(a.shape)} on our side and "
            f"{b.dtype}{list(b.shape)} on theirs; {strategy.name} cannot merge them "
            "(pick a side with take-ours or take-theirs)"
        )
    if a.dtype not in MERGEABLE_DTYPES:
        return dataclasses.replace(
            conflict, reason=f"{a.dtype} values are not merged numerically; pick a side"
        )
    if strategy.needs_base:
        if o is None:
            return dataclasses.replace(conflict, reason=f"{strategy.name} needs a merge base")
        if (o.dtype, o.shape) != (a.dtype, a.shape):
            raise MergeError(
                f"{path}: parameter {name} is {o.dtype}{list(o.shape)} in the merge base and "
                f"{a.dtype}{list(a.shape)} on both sides; {strategy.name} needs them equal"
            )
    # A base of another dtype or shape is no base for this parameter (averaging ignores it).
    usable_base = o is not None and (o.dtype, o.shape) == (a.dtype, a.shape)
    base_values = to_compute(_load(store, o, path, name)) if o is not None and usable_base else None
    sides = [to_compute(_load(store, e, path, name)) for e in (a, b)]
    weights = resolve_weights(choice.options, len(sides))
    values = strategy.merge(base_values, sides, weights, choice.options, name=name)
    if values.shape != sides[0].shape:
        raise MergeError(f"{path}: parameter {name}: {strategy.name} changed its shape")
    tensor = from_compute(values, a.dtype)
    return ParamEntry(
        tensor.dtype, tensor.shape, content_hash(tensor.data), store.put(encode_object(tensor))
    )


def _load(store: ObjectStore, entry: ParamEntry, path: str, name: str) -> RawTensor:
    if entry.updates:
        raise MergeError(
            f"{path}: parameter {name} is stored as updates, which cannot be merged yet"
        )
    try:
        tensor = store.load_tensor(entry.object)
    except (CorruptObjectError, MissingObjectError) as exc:
        raise type(exc)(
            f"{path}: parameter {name}: {exc}; run `git theta fetch` for the merged branches"
        ) from None
    if (tensor.dtype, tensor.shape, content_hash(tensor.data)) != (
        entry.dtype,
        entry.shape,
        entry.hash,
    ):
        raise CorruptObjectError(
            f"{path}: parameter {name}: object {entry.object.oid} holds other data than recorded"
        )
    return tensor


def unresolved_message(path: str, unresolved: Sequence[Conflict], *, merging: bool) -> str:
    """One message naming the conflicting parameters and the commands that resolve them."""
    shown = ", ".join(c.describe() for c in unresolved[:5])
    more = f" and {len(unresolved) - 5} more" if len(unresolved) > 5 else ""
    how = (
        f"run `git theta resolve {path} --strategy STRATEGY` (e.g. average, take-ours), or "
        "redo the merge with `git -c theta.merge.strategy=average merge ...`"
        if merging
        else "choose a strategy that can resolve them (take-ours, take-theirs)"
    )
    return f"git-theta: {path}: conflicting parameters: {shown}{more}; {how}"
