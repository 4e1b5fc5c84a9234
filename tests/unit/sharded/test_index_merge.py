"""Shard index parsing and the three-way merge of its weight_map."""

from __future__ import annotations

import json

import pytest

from git_theta.errors import CheckpointError
from git_theta.sharded.index import parse_index
from git_theta.sharded.merge import merge_indexes


def _index(weight_map, total=None, **meta):
    doc = {"metadata": {**({"total_size": total} if total is not None else {}), **meta}}
    doc["weight_map"] = weight_map
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def _merge(base, ours, theirs):
    return merge_indexes(base, ours, theirs, path="m.json", labels=("ours", "theirs"))


def test_one_sided_moves_additions_and_removals_merge_and_sizes_add_up():
    base = _index({"a": "s1", "b": "s1", "c": "s2"}, total=30, note="x")
    ours = _index({"a": "s2", "b": "s1", "c": "s2", "d": "s2"}, total=40, note="x")
    theirs = _index({"a": "s1", "b": "s1"}, total=20, note="y")
    merged = _merge(base, ours, theirs)
    assert merged.conflicts == []
    doc = json.loads(merged.text)
    assert doc["weight_map"] == {"a": "s2", "b": "s1", "d": "s2"}
    assert doc["metadata"] == {"total_size": 30, "note": "y"}
    assert merged.text == _index(doc["weight_map"], total=30, note="y")


def test_a_move_against_a_removal_or_another_move_conflicts_with_markers():
    base = _index({"a": "s1", "b": "s1"})
    merged = _merge(base, _index({"a": "s2", "b": "s3"}), _index({"a": "s3"}))
    assert merged.conflicts == ["a", "b"]
    text = merged.text.decode()
    assert '<<<<<<< ours\n    "a": "s2",\n=======\n    "a": "s3",\n>>>>>>> theirs\n' in text
    assert '<<<<<<< ours\n    "b": "s3"\n=======\n>>>>>>> theirs\n' in text


def test_a_new_index_on_both_sides_merges_against_nothing():
    merged = _merge(None, _index({"a": "s1"}, total=4), _index({"b": "s1"}, total=8))
    assert json.loads(merged.text)["weight_map"] == {"a": "s1", "b": "s1"}
    assert json.loads(merged.text)["metadata"]["total_size"] == 12


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "m.json: not a valid JSON shard index: "),
        (b"[]", "m.json: no weight_map of parameter names to shard file names"),
        (_index({"a": "../x.safetensors"}), "m.json: parameter 'a' names shard '../x.safetensors'"),
        (_index({"a": "s"}, total=-1), "m.json: metadata.total_size -1 is not a byte count"),
    ],
)
def test_bad_indexes_are_one_line_naming_the_file(data, message):
    with pytest.raises(CheckpointError) as info:
        parse_index(data, path="m.json")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
