"""Task-vector inner products from stored updates equal numpy's on the dense task vectors."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest

from git_theta.metadata import ParamEntry
from git_theta.similarity.terms import DeltaTerm, LowRankTerm, inner
from git_theta.similarity.vectors import Zero, task_vector
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash
from git_theta.updates.delta import Delta, delta_bytes
from git_theta.updates.ia3 import ia3_record
from git_theta.updates.low_rank import low_rank_record
from git_theta.updates.rebuild import rebuild
from git_theta.updates.sparse import Sparse

KINDS = ("dense", "low-rank", "low-rank-t", "ia3-rows", "ia3-cols", "sparse", "stacked", "delta")


def _raw(array: np.ndarray) -> RawTensor:
    return RawTensor("F64", tuple(array.shape), np.ascontiguousarray(array, "<f8").tobytes())


class Maker:
    """Entries of one F64 base parameter, each with an update of one kind (real records)."""

    def __init__(self, store: ObjectStore, shape: tuple[int, ...]) -> None:
        self.store, self.shape = store, shape
        self.w = np.random.default_rng(0).standard_normal(shape)
        self.base = self._dense(self.w)

    def put(self, array: np.ndarray):
        return self.store.put(encode_object(_raw(array)))

    def _dense(self, array: np.ndarray) -> ParamEntry:
        return ParamEntry("F64", self.shape, content_hash(_raw(array).data), self.put(array))

    def _with(self, *records) -> ParamEntry:
        entry = ParamEntry("F64", self.shape, "", self.base.object, tuple(records))
        return ParamEntry(
            "F64",
            self.shape,
            content_hash(self.values(entry).tobytes()),
            entry.object,
            entry.updates,
        )

    def values(self, entry: ParamEntry) -> np.ndarray:
        return np.frombuffer(rebuild(entry, self.store.load_tensor).data, "<f8").reshape(self.shape)

    def _lr(self, rng, rank: int, transpose: bool) -> dict:
        m, n = self.shape[::-1] if transpose else self.shape
        a, b = rng.standard_normal((rank, n)), rng.standard_normal((m, rank))
        scale = float(rng.uniform(-2, 2))
        return low_rank_record(self.put(a), self.put(b), scale, transpose=transpose, tolerance=1)

    def make(self, kind: str, seed: int) -> ParamEntry:
        rng = np.random.default_rng(seed)
        if kind == "dense":
            return self._dense(self.w + rng.standard_normal(self.shape))
        if kind in ("low-rank", "low-rank-t"):
            return self._with(self._lr(rng, 3, kind == "low-rank-t"))
        if kind == "stacked":
            return self._with(self._lr(rng, 2, False), self._lr(rng, 4, True))
        if kind.startswith("ia3"):
            axis = 0 if kind == "ia3-rows" else len(self.shape) - 1
            v = 1 + rng.standard_normal(self.shape[axis])
            return self._with(ia3_record(self.put(v), axis, tolerance=1))
        if kind == "delta":  # a full fine-tune: every element moves a little
            after = self.w + 0.01 * rng.standard_normal(self.shape)
            inferred = Delta().infer(_raw(self.w), _raw(after), self._write, {})
            return self._with(dict(inferred.record))
        after = self.w.copy().reshape(-1)
        idx = rng.choice(after.size, size=after.size // 5, replace=False)
        after[idx] += rng.standard_normal(idx.size)
        before, new = _raw(self.w), _raw(after.reshape(self.shape))
        inferred = Sparse().infer(before, new, self._write, {})
        return self._with(dict(inferred.record))

    def _write(self, tensor: RawTensor):
        return self.store.put(encode_object(tensor))


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


def _vector(maker: Maker, entry: ParamEntry):
    def load_entry(e: ParamEntry) -> RawTensor:
        return rebuild(e, maker.store.load_tensor)

    return task_vector(maker.base, entry, maker.store.load_tensor, load_entry)


PAIRS = [((24, 17), x, y) for x, y in itertools.combinations_with_replacement(KINDS, 2)] + [
    ((6, 5, 4), x, y)  # low-rank updates are 2-D only
    for x, y in itertools.combinations_with_replacement(
        ("dense", "ia3-rows", "ia3-cols", "sparse", "delta"), 2
    )
]


@pytest.mark.parametrize(("shape", "x", "y"), PAIRS)
def test_cosine_equals_numpy_on_dense_task_vectors(store, shape, x, y):
    maker = Maker(store, shape)
    one, two = maker.make(x, 1), maker.make(y, 2)
    tx, ty = _vector(maker, one), _vector(maker, two)
    dx = (maker.values(one) - maker.w).reshape(-1)
    dy = (maker.values(two) - maker.w).reshape(-1)
    want = float(dx @ dy) / (np.linalg.norm(dx) * np.linalg.norm(dy))
    got = inner(tx, ty) / math.sqrt(inner(tx, tx) * inner(ty, ty))
    assert got == pytest.approx(want, rel=1e-6)
    assert inner(ty, tx) == pytest.approx(float(dx @ dy), rel=1e-9)


def test_structure_is_kept_for_each_kind(store):
    maker = Maker(store, (24, 17))
    kinds = {k: _vector(maker, maker.make(k, 3)).kind for k in KINDS}
    assert kinds == {
        "dense": "dense",
        "low-rank": "low-rank",
        "low-rank-t": "low-rank",
        "stacked": "low-rank",  # two low-rank updates stack into one term
        "ia3-rows": "ia3",
        "ia3-cols": "ia3",
        "sparse": "sparse",
        "delta": "delta",  # decoded block by block, never rebuilt whole
    }
    assert isinstance(_vector(maker, maker.base), Zero)


def test_an_unchanged_parameter_reads_nothing(store):
    maker = Maker(store, (24, 17))
    same = maker.make("delta", 3)
    unchanged = ParamEntry("F64", same.shape, same.hash, same.object, same.updates)

    def no_reads(*_):
        raise AssertionError("an unchanged parameter read an object")

    assert isinstance(task_vector(same, unchanged, no_reads, no_reads), Zero)


def test_low_rank_inner_product_never_makes_an_m_by_n_array():
    m, n, r = 20_000, 10_000, 8  # dense float64 would be 1.6 GB
    rng = np.random.default_rng(0)
    x = LowRankTerm(rng.standard_normal((m, r)), rng.standard_normal((r, n)))
    y = LowRankTerm(rng.standard_normal((m, r)), rng.standard_normal((r, n)))
    tracemalloc.start()
    value = inner(x, y) / math.sqrt(inner(x, x) * inner(y, y))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < m * n * 4 / 1000  # far below even one float32 m x n array
    assert -1.0 <= value <= 1.0


def test_delta_inner_product_streams_a_block_of_rows_at_a_time():
    rows, cols = 2048, 4096  # float32: 32 MiB a version, 64 MiB as float64
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    before = RawTensor("F32", (rows, cols), w.tobytes())
    x, y = (
        DeltaTerm(before, delta_bytes(before, RawTensor("F32", (rows, cols), (w + d).tobytes())))
        for d in (np.float32(0.01), rng.standard_normal((rows, cols), dtype=np.float32))
    )
    del w
    tracemalloc.start()
    value = inner(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < rows * cols * 4 / 2  # a few float64 blocks: less than half of one version
    assert np.isfinite(value)


@pytest.mark.parametrize(("x", "y"), list(itertools.combinations_with_replacement(KINDS, 2)))
def test_fisher_weighted_inner_product_equals_numpy(store, x, y):
    from git_theta.similarity.terms import weighted_inner

    maker = Maker(store, (24, 17))
    fisher = np.random.default_rng(5).uniform(0, 3, (24, 17))
    one, two = maker.make(x, 1), maker.make(y, 2)
    dx = (maker.values(one) - maker.w).reshape(-1)
    dy = (maker.values(two) - maker.w).reshape(-1)
    want = float(np.sum(fisher.reshape(-1) * dx * dy))
    got = weighted_inner(_vector(maker, one), _vector(maker, two), fisher)
    assert got == pytest.approx(want, rel=1e-9)
