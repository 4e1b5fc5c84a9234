"""Rebuilding an entry: the dense object, then every update of the chain in order."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.metadata import ParamEntry
from git_theta.tensor import RawTensor, content_hash
from git_theta.updates.ia3 import ia3_record
from git_theta.updates.low_rank import low_rank_record
from git_theta.updates.rebuild import exact, rebuild

SHAPE = (5, 4)


@pytest.fixture
def chain(write, to_dtype):
    """A base and one record of each type, with the float64 values each record stands for."""
    rng = np.random.default_rng(11)
    base = to_dtype(rng.standard_normal(SHAPE), "F32")
    a = to_dtype(rng.standard_normal((2, 4)), "F32")
    b = to_dtype(rng.standard_normal((5, 2)), "F32")
    v = to_dtype(1 + rng.random((5, 1)), "F32")
    replacement = to_dtype(rng.standard_normal(SHAPE), "F32")
    indices = np.array([0, 7, 19], "<i4")
    new = np.array([-1.0, 2.0, 3.0], "<f4")
    records = {
        "low-rank": low_rank_record(write(a), write(b), 0.5, transpose=False, tolerance=1.0),
        "ia3": ia3_record(write(v), 0, tolerance=1.0),
        "sparse": {
            "type": "sparse",
            "count": 3,
            "indices": write(RawTensor("I32", (3,), indices.tobytes())).to_json(),
            "values": write(RawTensor("F32", (3,), new.tobytes())).to_json(),
        },
        "dense": {"type": "dense", "object": write(replacement).to_json()},
    }
    steps = {
        "low-rank": lambda x: x + (b.to_numpy() @ a.to_numpy()) * np.float32(0.5),
        "ia3": lambda x: x * v.to_numpy(),
        "sparse": lambda x: np.put(y := x.copy(), indices, new) or y,
        "dense": lambda x: replacement.to_numpy().copy(),
    }
    return base, records, steps


def _reference(base: RawTensor, steps, order) -> np.ndarray:
    x = base.to_numpy().astype(np.float32)
    for kind in order:
        x = steps[kind](x).astype(np.float32)
    return x


@pytest.mark.parametrize(
    "order",
    [
        ("low-rank", "ia3", "sparse"),
        ("sparse", "ia3", "low-rank"),
        ("ia3", "low-rank", "ia3", "sparse", "low-rank"),
        ("low-rank", "dense", "ia3"),
        ("sparse", "sparse"),
    ],
)
def test_chain_applies_in_order(order, chain, write, load):
    base, records, steps = chain
    entry = ParamEntry("F32", SHAPE, "", write(base), tuple(records[k] for k in order))

    out = rebuild(entry, load)

    assert (out.dtype, out.shape) == ("F32", SHAPE)
    assert bytes(out.data) == _reference(base, steps, order).tobytes()


def test_order_matters(chain, write, load):
    base, records, _ = chain
    ref = write(base)
    one = rebuild(ParamEntry("F32", SHAPE, "", ref, (records["ia3"], records["sparse"])), load)
    two = rebuild(ParamEntry("F32", SHAPE, "", ref, (records["sparse"], records["ia3"])), load)
    assert bytes(one.data) != bytes(two.data)


def test_a_given_base_is_used_instead_of_loading_it(chain, write, load):
    base, records, steps = chain
    stand_in = RawTensor.from_numpy(np.zeros(SHAPE, "<f4"))
    entry = ParamEntry("F32", SHAPE, "", write(base), (records["ia3"],))
    out = rebuild(entry, load, base=stand_in)
    assert bytes(out.data) == np.zeros(SHAPE, "<f4").tobytes()


def test_an_entry_without_updates_is_its_object(chain, write, load):
    base, _, _ = chain
    entry = ParamEntry("F32", SHAPE, content_hash(base.data), write(base))
    assert bytes(rebuild(entry, load).data) == bytes(base.data)


def test_rebuild_is_deterministic(chain, write, load):
    base, records, _ = chain
    entry = ParamEntry("F32", SHAPE, "", write(base), (records["low-rank"], records["ia3"]))
    assert bytes(rebuild(entry, load).data) == bytes(rebuild(entry, load).data)


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        ((), True),
        (("sparse", "dense", "sparse"), True),
        (("sparse", "ia3"), False),
        (("low-rank",), False),
    ],
)
def test_exact_means_no_float_computation(kinds, expected, chain, write):
    base, records, _ = chain
    entry = ParamEntry("F32", SHAPE, "", write(base), tuple(records[k] for k in kinds))
    assert exact(entry) is expected
