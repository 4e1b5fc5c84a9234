"""Rank revisions by the cosine similarity of their task vectors to a target revision's.

For a target T and another revision R, the base is `--base` or the merge base of T and R;
the task vectors are T - base and R - base over the parameters of the compared checkpoints.
Parameters are read one at a time: the target's task vector once per base, each other
revision's in turn, so memory holds two parameters' task vectors at most.
"""

from __future__ import annotations

import fnmatch
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from git_theta import metadata as md
from git_theta.context import RepoContext
from git_theta.errors import GitThetaError
from git_theta.metadata import Metadata, ParamEntry
from git_theta.similarity.terms import Term, inner, view2d, weighted_inner
from git_theta.similarity.vectors import Zero, comparable, task_vector

if TYPE_CHECKING:
    import numpy as np

    from git_theta.merges.fisher_files import FisherFile

__all__ = ["Comparison", "Score", "compare", "group_of", "resolve_commit"]


def group_of(name: str) -> str:
    """The group a parameter is reported in: its name up to the first all-digit component
    (`model.layers.3`), else without its last component (`lm_head`), else itself."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) if len(parts) > 1 else name


@dataclass
class Score:
    """Sums over some parameters: <t, r>, |t|^2, |r|^2."""

    dot: float = 0.0
    target_sq: float = 0.0
    other_sq: float = 0.0

    def add(self, dot: float, target_sq: float, other_sq: float) -> None:
        self.dot += dot
        self.target_sq += target_sq
        self.other_sq += other_sq

    @property
    def cosine(self) -> float | None:
        """None when either task vector is zero (no direction to compare)."""
        denom = math.sqrt(self.target_sq) * math.sqrt(self.other_sq)
        return self.dot / denom if denom > 0 else None

    @property
    def target_norm(self) -> float:
        return math.sqrt(self.target_sq)

    @property
    def norm(self) -> float:
        return math.sqrt(self.other_sq)


@dataclass
class Comparison:
    """One revision compared with the target."""

    revision: str
    commit: str
    base: str = ""
    total: Score = field(default_factory=Score)
    groups: dict[str, Score] = field(default_factory=dict)
    pairs: Counter[str] = field(default_factory=Counter)  # "low-rank/dense" -> parameters
    common: int = 0  # parameters with a task vector on both sides (zero or not)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> parameters
    note: str = ""  # why it was not compared at all

    @property
    def cosine(self) -> float | None:
        return self.total.cosine


def _selected(name: str, params: Sequence[str]) -> bool:
    return not params or any(fnmatch.fnmatchcase(name, p) for p in params)


class _Reader:
    def __init__(self, session: RepoContext) -> None:
        self.session = session
        self._meta: dict[tuple[str, str], Metadata | None] = {}

    def metadata(self, commit: str, path: str) -> Metadata | None:
        key = (commit, path)
        if key not in self._meta:
            blob = self.session.repo.read_blob(f"{commit}:{path}")
            found = None
            if blob is not None and md.looks_like_metadata(blob[: len(md.MAGIC)]):
                found = md.decode(blob, source=f"{commit}:{path}")
            self._meta[key] = found
        return self._meta[key]

    def vector(self, path: str, name: str, base: ParamEntry, entry: ParamEntry) -> Term | Zero:
        from git_theta.merges.engine import read_param

        if (base.hash, base.dtype, base.shape) == (entry.hash, entry.dtype, entry.shape):
            return Zero()
        fmt = Metadata(format="", layout=None, params={f"{name} (base)": base, name: entry})
        self.session.check_objects(fmt, path)
        store = self.session.store
        return task_vector(
            base, entry, store.load_tensor, lambda e: read_param(store, e, path, name)
        )

    def fisher_file(self, path: str, commit: str) -> FisherFile:
        """The target's Fisher file for `path`, as `merge -s fisher` finds it."""
        from git_theta.merges.engine import read_param
        from git_theta.merges.fisher_files import Origin, open_fisher_files

        store = self.session.store
        (found,) = open_fisher_files(
            "",
            [Origin(path, commit)],
            repo=self.session.repo,
            load=lambda e, source, name: read_param(store, e, source, name),
            fetch=self.session.check_objects,
        )
        return found


def _fisher_weights(file: FisherFile, name: str, entry: ParamEntry) -> np.ndarray:
    import numpy as np

    from git_theta.compute import MERGEABLE_DTYPES, to_compute
    from git_theta.errors import MergeError

    tensor = file.tensor(name, entry)
    if tensor.dtype not in MERGEABLE_DTYPES:
        raise MergeError(f"{file.source}: Fisher tensor for parameter {name} is not a float")
    values = to_compute(tensor).reshape(view2d(entry.shape))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise MergeError(
            f"{file.source}: Fisher tensor for parameter {name} has values < 0 or not finite"
        )
    return values


def compare(
    session: RepoContext,
    target: str,
    others: Iterable[str],
    *,
    paths: Sequence[str],
    base: str | None = None,
    params: Sequence[str] = (),
    fisher: bool = False,
) -> list[Comparison]:
    """Compare `others` with `target` over the checkpoints `paths`, in the order given. With
    `fisher`, inner products are weighted by the target's Fisher tensors (the file
    `merge -s fisher` reads: `model.fisher.safetensors` beside `model.safetensors` in the
    target's commit), the Task2Vec view.

    Raises:
        RevisionError: `target` or `base` names no commit.
        MergeError: with `fisher`, the target's Fisher file is absent or unusable.
    """
    repo = session.repo
    target_commit = resolve_commit(session, target)
    base_commit = resolve_commit(session, base) if base is not None else None
    results: list[Comparison] = []
    by_base: dict[str, list[Comparison]] = {}
    for rev in others:
        comparison = Comparison(rev, "")
        results.append(comparison)
        try:
            comparison.commit = resolve_commit(session, rev)
            comparison.base = base_commit or repo.merge_base(target_commit, comparison.commit)
        except GitThetaError as exc:
            comparison.note = str(exc).strip().splitlines()[-1]
            continue
        by_base.setdefault(comparison.base, []).append(comparison)
    reader = _Reader(session)
    for base_rev, group in by_base.items():
        for path in paths:
            weights = reader.fisher_file(path, target_commit) if fisher else None
            _compare_path(reader, path, target_commit, base_rev, group, params, weights)
    return results


def _compare_path(
    reader: _Reader,
    path: str,
    target: str,
    base: str,
    group: list[Comparison],
    params: Sequence[str],
    fisher: FisherFile | None = None,
) -> None:
    base_meta = reader.metadata(base, path)
    target_meta = reader.metadata(target, path)
    if base_meta is None or target_meta is None:
        for c in group:
            c.skipped[f"{path} not in the {'base' if base_meta is None else 'target'}"] += 1
        return
    metas = {c.commit: reader.metadata(c.commit, path) for c in group}
    for name in sorted(target_meta.params):
        if not _selected(name, params):
            continue
        o, t = base_meta.params.get(name), target_meta.params[name]
        if not comparable(o, t):
            for c in group:
                c.skipped["not comparable in the target (added, re-shaped or not float)"] += 1
            continue
        assert o is not None
        weights = _fisher_weights(fisher, name, t) if fisher is not None else None

        def dot_of(x: Term, y: Term, weights: np.ndarray | None = weights) -> float:
            return inner(x, y) if weights is None else weighted_inner(x, y, weights)

        t_vec: Term | Zero | None = None
        t_sq = 0.0
        for c in group:
            meta = metas[c.commit]
            entry = meta.params.get(name) if meta is not None else None
            if not comparable(o, entry):
                c.skipped["absent or not comparable in the revision"] += 1
                continue
            assert entry is not None
            if t_vec is None:
                t_vec = reader.vector(path, name, o, t)
                t_sq = dot_of(t_vec, t_vec) if isinstance(t_vec, Term) else 0.0
            r_vec = reader.vector(path, name, o, entry)
            c.common += 1
            c.pairs[f"{t_vec.kind}/{r_vec.kind}"] += 1
            if isinstance(r_vec, Zero):
                dot, r_sq = 0.0, 0.0
            elif entry == t:
                r_sq = dot = t_sq  # the same update on both sides: nothing more to read
            else:
                r_sq = dot_of(r_vec, r_vec)
                dot = dot_of(t_vec, r_vec) if isinstance(t_vec, Term) else 0.0
            del r_vec
            c.total.add(dot, t_sq, r_sq)
            c.groups.setdefault(group_of(name), Score()).add(dot, t_sq, r_sq)


def resolve_commit(session: RepoContext, rev: str) -> str:
    """The commit `rev` names.

    Raises:
        RevisionError: none.
    """
    from git_theta.errors import RevisionError

    args = ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]
    found = session.repo.git(*args, check=False).decode().strip()
    if not found:
        raise RevisionError(["git", *args], 1, f"fatal: {rev}: no such commit")
    return found
