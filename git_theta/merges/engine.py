"""Merge versions of a tracked checkpoint against their base, as metadata.

The three-way rules (merges/three_way.py) settle most parameters without reading a tensor; a
strategy (merges/) resolves the parameters changed on several sides. Merged tensors go into the
object store; the result is new metadata. Used by the merge driver, `git theta resolve` (also
interactively, git_theta/resolver/) and `git theta merge-models` (any number of sides).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from git_theta import metadata as md
from git_theta import settings
from git_theta.errors import (
    ConfigError,
    CorruptObjectError,
    MergeError,
    MetadataError,
    MissingObjectError,
    in_context,
)
from git_theta.git.repo import Repo
from git_theta.merges import MergeStrategy, get_strategy, parse_options, split_options
from git_theta.merges.base import resolve_weights
from git_theta.merges.three_way import Conflict, ThreeWay, merged_layout, n_way
from git_theta.metadata import Metadata, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash

if TYPE_CHECKING:
    from git_theta.merges.fisher_files import FisherFile

__all__ = [
    "FileMerge",
    "MergeChoice",
    "MergeResult",
    "cannot_resolve",
    "configured_choice",
    "read_param",
    "merge_metadata",
    "read_side",
    "unresolved_message",
]


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

    @classmethod
    def for_names(
        cls, strategy: MergeStrategy, options: Mapping[str, Any], names: Sequence[str]
    ) -> MergeChoice:
        """A choice for exactly these parameter names (glob characters in them escaped)."""
        return cls(strategy, options, tuple(glob.escape(n) for n in names))

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
        settings.MERGE_STRATEGY_ENV.read()
        or settings.MERGE_ATTRIBUTE.read(repo, path)
        or settings.MERGE_STRATEGY.read(repo)
    )
    if not name or name == "set":  # a bare `theta-merge` attribute names nothing
        return None
    text = settings.MERGE_OPTIONS_ENV.read()
    if text is None:
        text = settings.MERGE_OPTIONS.read(repo) or ""
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


FisherFinder = Callable[[str], "list[FisherFile]"]  # the `fisher` option -> one file per side


@dataclass
class FileMerge:
    """The versions of one checkpoint being merged, and what merging them needs.

    Args:
        path: the file, for messages.
        base: the common ancestor (None: none, e.g. a file added on both sides).
        sides: ours first, theirs last (more for a model soup); one format.
        store: where tensors are read from and merged tensors go.
        fetch: called with metadata listing entries a numeric strategy may read, to download
            absent objects first (RepoContext.check_objects).
        fisher: finds each side's Fisher file (the `fisher` strategy); None: not available.

    Raises:
        MergeError: the sides are of different formats.
    """

    path: str
    base: Metadata | None
    sides: Sequence[Metadata]
    store: ObjectStore
    fetch: Callable[[Metadata], None] | None = None
    fisher: FisherFinder | None = None
    plan: ThreeWay = field(init=False)
    _fisher_files: dict[str, list[FisherFile]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        formats = {s.format for s in self.sides}
        if len(formats) > 1:
            first, other = self.sides[0].format, (formats - {self.sides[0].format}).pop()
            raise MergeError(
                f"{self.path}: our side is {first} and another is {other}; convert one first"
            )
        self.plan = n_way(self.base, self.sides)

    @property
    def conflicts(self) -> list[Conflict]:
        return self.plan.conflicts

    def prefetch(self, conflicts: Sequence[Conflict]) -> None:
        """Download the objects of these conflicts' entries that the store lacks."""
        if self.fetch is None:
            return
        needed = {
            f"{c.name} ({label})": e
            for c in conflicts
            for label, e in (("base", c.base), *((f"side {i}", e) for i, e in enumerate(c.sides)))
            if e is not None
        }
        if needed:
            self.fetch(Metadata(self.sides[0].format, None, needed))

    def values(self, entry: ParamEntry, name: str) -> np.ndarray:
        """The entry's values in the compute dtype (float32; float64 for F64)."""
        from git_theta.compute import to_compute

        return to_compute(read_param(self.store, entry, self.path, name))

    def merge(self, choices: Sequence[MergeChoice]) -> MergeResult:
        """Resolve each conflict with the first choice that applies to it.

        Raises:
            MergeError: a conflicting parameter's sides differ in shape or dtype (or differ
                from the base a task-vector strategy needs), or a Fisher file is unusable.
            MissingObjectError, CorruptObjectError: a tensor the strategy needs cannot be read.
        """
        chosen = [(c, _first(choices, c.name)) for c in self.conflicts]
        self.prefetch([c for c, ch in chosen if ch is not None and ch.strategy.pick is None])
        params = dict(self.plan.merged)
        unresolved: list[Conflict] = []
        from git_theta.progress import with_progress

        shown = with_progress(
            iter(chosen),
            label=f"git-theta: merging {self.path}",
            total=sum(c.sides[0].nbytes for c, _ in chosen if c.sides[0] is not None),
            size=lambda item: item[0].sides[0].nbytes if item[0].sides[0] is not None else 0,
        )
        for conflict, choice in shown:
            if choice is None:
                unresolved.append(conflict)
                continue
            outcome = self._resolve(conflict, choice)
            if isinstance(outcome, Conflict):
                unresolved.append(outcome)
            elif outcome is not None:
                params[conflict.name] = outcome
        fmt = self.sides[0].format
        layout = merged_layout(params, *self.sides)
        return MergeResult(Metadata(fmt, layout, params), unresolved)

    def _resolve(self, conflict: Conflict, choice: MergeChoice) -> ParamEntry | Conflict | None:
        """The merged entry (None: deleted), or the conflict with the reason it stays one."""
        from git_theta.compute import from_compute

        strategy, name = choice.strategy, conflict.name
        if strategy.pick is not None:
            return (
                conflict.base
                if strategy.pick == "base"
                else (conflict.ours if strategy.pick == "ours" else conflict.theirs)
            )
        if any(e is None for e in conflict.sides):
            return dataclasses.replace(conflict, reason=cannot_resolve(strategy, conflict))
        entries = [e for e in conflict.sides if e is not None]
        first, o = entries[0], conflict.base
        self._check_sides(name, strategy, entries)
        reason = cannot_resolve(strategy, conflict)
        if reason:
            return dataclasses.replace(conflict, reason=reason)
        if (
            strategy.needs_base
            and o is not None
            and (o.dtype, o.shape) != (first.dtype, first.shape)
        ):
            raise MergeError(
                f"{self.path}: parameter {name} is {o.dtype}{list(o.shape)} in the merge base "
                f"and {first.dtype}{list(first.shape)} on {'both' if len(entries) == 2 else 'all'}"
                f" sides; {strategy.name} needs them equal"
            )
        # A base of another dtype or shape is no base for this parameter (averaging ignores it).
        usable_base = o is not None and (o.dtype, o.shape) == (first.dtype, first.shape)
        weights = resolve_weights(choice.options, len(entries))
        coefficients = strategy.linear_coefficients(weights, choice.options)
        if o is not None and usable_base and coefficients is not None:
            from git_theta.merges.low_rank import merge_low_rank

            low_rank = merge_low_rank(o, entries, coefficients, self.store)
            if low_rank is not None:
                return low_rank
        base_values = self.values(o, name) if o is not None and usable_base else None
        sides = [self.values(e, name) for e in entries]
        inputs = {
            kind: self._side_inputs(kind, choice, name, first) for kind in strategy.side_inputs
        }
        values = strategy.merge(
            base_values, sides, weights, choice.options, name=name, inputs=inputs or None
        )
        if values.shape != sides[0].shape:
            raise MergeError(f"{self.path}: parameter {name}: {strategy.name} changed its shape")
        # Free the inputs before the cast back, and the float32 values after it: peak RSS
        # is then the inputs and the output of one tensor (issue 5, bench_merge.py).
        del base_values, sides, inputs
        tensor = from_compute(values, first.dtype)
        del values
        return ParamEntry(
            tensor.dtype,
            tensor.shape,
            content_hash(tensor.data),
            self.store.put(encode_object(tensor)),
        )

    def _check_sides(self, name: str, strategy: MergeStrategy, entries: list[ParamEntry]) -> None:
        """Raise MergeError unless every side has the first side's dtype and shape."""
        first = entries[0]
        labels = _side_labels(len(entries))
        for label, e in zip(labels[1:], entries[1:], strict=True):
            if (e.dtype, e.shape) != (first.dtype, first.shape):
                raise MergeError(
                    f"{self.path}: parameter {name} is {first.dtype}{list(first.shape)} on "
                    f"{labels[0]} and {e.dtype}{list(e.shape)} on {label}; {strategy.name} "
                    "cannot merge them (pick a side with take-ours or take-theirs)"
                )

    def _side_inputs(
        self, kind: str, choice: MergeChoice, name: str, like: ParamEntry
    ) -> list[np.ndarray]:
        from git_theta.compute import MERGEABLE_DTYPES, to_compute

        if kind != "fisher":
            raise ConfigError(f"merge strategy {choice.strategy.name} needs {kind} tensors")
        option = str(choice.options.get("fisher") or "")
        if option not in self._fisher_files:
            if self.fisher is None:
                raise MergeError(
                    f"{self.path}: fisher: no Fisher files here; name them with fisher=A,B"
                )
            self._fisher_files[option] = self.fisher(option)
        compute = np.float64 if like.dtype == "F64" else np.float32
        out = []
        for f in self._fisher_files[option]:
            tensor = f.tensor(name, like)
            if tensor.dtype not in MERGEABLE_DTYPES:
                raise MergeError(
                    f"{f.source}: Fisher tensor for parameter {name} is {tensor.dtype}, not a float"
                )
            out.append(to_compute(tensor).astype(compute))
        return out


def merge_metadata(
    base: Metadata | None,
    sides: Sequence[Metadata],
    *,
    choices: Sequence[MergeChoice],
    store: ObjectStore,
    path: str,
    fetch: Callable[[Metadata], None] | None = None,
    fisher: FisherFinder | None = None,
) -> MergeResult:
    """Merge `sides` (ours first) against `base`; each conflict goes to the first choice
    that applies to it (see FileMerge.merge for what it raises)."""
    return FileMerge(path, base, sides, store, fetch, fisher).merge(choices)


def cannot_resolve(strategy: MergeStrategy, conflict: Conflict) -> str:
    """Why `strategy` leaves `conflict` unresolved without reading a tensor; "" when it can try."""
    from git_theta.compute import MERGEABLE_DTYPES

    if strategy.pick is not None:
        return ""  # a pick reuses an entry whole (taking an absent version deletes)
    entries = conflict.sides
    if any(e is None for e in entries):
        return f"{strategy.name} cannot merge a deletion"
    dtype = entries[0].dtype if entries[0] is not None else ""
    if dtype not in MERGEABLE_DTYPES:
        return f"{dtype} values are not merged numerically; pick a side"
    if strategy.needs_base and conflict.base is None:
        return f"{strategy.name} needs a merge base"
    return ""


def _first(choices: Sequence[MergeChoice], name: str) -> MergeChoice | None:
    return next((c for c in choices if c.applies_to(name)), None)


def _side_labels(n: int) -> list[str]:
    return ["our side", "theirs"] if n == 2 else [f"model {i + 1}" for i in range(n)]


def read_param(store: ObjectStore, entry: ParamEntry, path: str, name: str) -> RawTensor:
    """The tensor of one parameter entry (update chains rebuilt), verified, with errors naming
    the file and parameter. Every tensor a merge reads (parameters and tracked Fisher files)
    comes through here."""
    from git_theta.updates.rebuild import load_entry

    try:
        return load_entry(entry, store)
    except (CorruptObjectError, MissingObjectError) as exc:
        advice = "run `git theta fetch` for the merged branches"
        raise in_context(exc, f"{path}: parameter {name}", advice=advice) from None
    except MetadataError as exc:
        raise in_context(exc, f"{path}: parameter {name}") from None


def unresolved_message(path: str, unresolved: Sequence[Conflict], *, merging: bool) -> str:
    """One message naming the conflicting parameters and the commands that resolve them."""
    shown = ", ".join(c.describe() for c in unresolved[:5])
    more = f" and {len(unresolved) - 5} more" if len(unresolved) > 5 else ""
    how = (
        f"run `git theta resolve {path} --strategy STRATEGY` (e.g. average, take-ours) or "
        f"`git theta resolve {path} --interactive`, or "
        "redo the merge with `git -c theta.merge.strategy=average merge ...`; "
        "`git theta diff` compares ours and theirs"
        if merging
        else "choose a strategy that can resolve them (take-ours, take-theirs)"
    )
    return f"git-theta: {path}: conflicting parameters: {shown}{more}; {how}"
