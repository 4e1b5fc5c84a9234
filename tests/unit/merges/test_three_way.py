"""The three-way state table and the strategy step, on metadata and a temp object store."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.compute import bf16_bits, to_compute
from git_theta.errors import MergeError
from git_theta.merges.engine import MergeChoice, merge_metadata
from git_theta.merges.three_way import merged_layout, n_way, three_way
from git_theta.metadata import Metadata, ObjectRef, ParamEntry
from git_theta.store import ObjectStore, encode_object
from git_theta.tensor import RawTensor, content_hash


def entry(tag: int, dtype: str = "F32", shape=(2,)) -> ParamEntry:
    return ParamEntry(dtype, shape, f"xxh3_128:{tag:032x}", ObjectRef(f"{tag:064x}", 10))


def meta(**params: ParamEntry | None) -> Metadata:
    return Metadata("safetensors", None, {k: v for k, v in params.items() if v is not None})


BASE, A, B = entry(1), entry(2), entry(3)


@pytest.mark.parametrize(
    ("o", "a", "b", "result", "kind"),
    [
        (None, A, None, A, None),
        (None, None, B, B, None),
        (None, A, A, A, None),
        (None, A, B, None, "add-add"),
        (BASE, BASE, B, B, None),
        (BASE, A, BASE, A, None),
        (BASE, A, A, A, None),
        (BASE, None, BASE, None, None),
        (BASE, BASE, None, None, None),
        (BASE, None, None, None, None),
        (BASE, A, None, None, "modify-delete"),
        (BASE, None, B, None, "delete-modify"),
        (BASE, A, B, None, "both-modified"),
    ],
)
def test_state_table(o, a, b, result, kind):
    plan = three_way(meta(p=o), meta(p=a), meta(p=b))
    assert plan.merged.get("p") == result
    assert [c.kind for c in plan.conflicts] == ([kind] if kind else [])


def test_layout_reused_only_when_names_dtypes_and_shapes_match():
    layout = entry(9, "U8", (16,))
    ours = Metadata("safetensors", layout, {"x": A})
    theirs = Metadata("safetensors", entry(8, "U8", (16,)), {"x": B, "y": B})
    assert merged_layout({"x": B}, ours, theirs) is layout
    assert merged_layout({"x": B, "y": B}, ours, theirs) == theirs.layout
    assert merged_layout({"x": entry(2, "F16")}, ours, theirs) is None


def put(store: ObjectStore, tensor: RawTensor) -> ParamEntry:
    ref = store.put(encode_object(tensor))
    return ParamEntry(tensor.dtype, tensor.shape, content_hash(tensor.data), ref)


def test_strategy_merges_bf16_and_leaves_integers_in_conflict(tmp_path):
    store = ObjectStore(tmp_path)
    f = np.array([1.0, 2.0, 3.0], np.float32)

    def bf16(values):
        return put(store, RawTensor("BF16", (3,), bf16_bits(values).tobytes()))

    def i64(values):
        return put(store, RawTensor.from_numpy(np.array(values, np.int64)))

    base = meta(w=bf16(f), step=i64([1]))
    ours = meta(w=bf16(f + 1), step=i64([2]))
    theirs = meta(w=bf16(f + 2), step=i64([3]))
    result = merge_metadata(
        base, [ours, theirs], choices=[MergeChoice.make("average", {})], store=store, path="m"
    )
    assert [c.describe() for c in result.unresolved] == [
        "step (modified on both sides; I64 values are not merged numerically; pick a side)"
    ]
    merged = result.metadata.params["w"]
    assert merged.dtype == "BF16"
    np.testing.assert_array_equal(to_compute(store.load_tensor(merged.object)), f + 1.5)


def test_shape_mismatch_is_an_error_naming_the_parameter(tmp_path):
    store = ObjectStore(tmp_path)
    with pytest.raises(MergeError, match="parameter p is F32\\[2\\] on our side and F32\\[3\\]"):
        merge_metadata(
            meta(p=BASE),
            [meta(p=A), meta(p=entry(3, shape=(3,)))],
            choices=[MergeChoice.make("average", {})],
            store=store,
            path="m",
        )


C = entry(4)


@pytest.mark.parametrize(
    ("o", "sides", "result", "kind"),
    [
        (BASE, (BASE, BASE, BASE), BASE, None),
        (BASE, (A, BASE, BASE), A, None),
        (BASE, (A, BASE, A), A, None),
        (BASE, (None, BASE, None), None, None),
        (BASE, (A, B, BASE), None, "both-modified"),
        (BASE, (A, BASE, C), None, "both-modified"),
        (BASE, (A, None, BASE), None, "modify-delete"),
        (BASE, (None, A, BASE), None, "delete-modify"),
        (None, (A, None, B), None, "add-add"),
        (None, (None, A, None), A, None),
    ],
)
def test_n_way_takes_the_one_change_or_conflicts(o, sides, result, kind):
    plan = n_way(meta(p=o), [meta(p=s) for s in sides])
    assert plan.merged.get("p") == result
    assert [c.kind for c in plan.conflicts] == ([kind] if kind else [])
    if kind:
        assert plan.conflicts[0].sides == sides


def test_n_way_describes_without_our_and_their():
    plan = n_way(meta(p=BASE), [meta(p=A), meta(p=B), meta(p=C)])
    assert plan.conflicts[0].describe() == "p (modified on several sides)"
