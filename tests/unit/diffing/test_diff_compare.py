"""compare(): statuses, order, what is read and what is not, missing objects."""

from __future__ import annotations

import numpy as np
import pytest

from git_theta.diffing.compare import CompareOptions, compare, raise_for_missing
from git_theta.diffing.sides import StoredSide
from git_theta.errors import MissingObjectError
from git_theta.store import ObjectStore
from testing.diffing import file_side, stored_side

BASE = {
    "a": ("F32", np.arange(8, dtype="<f4")),
    "b": ("F32", np.ones(4, "<f4")),
    "c": ("I32", np.arange(3, dtype="<i4")),
    "d": ("F16", np.ones((2, 2), "<f2")),
}


def edited():
    new = dict(BASE)
    new["a"] = ("F32", np.arange(8, dtype="<f4") * 2)  # rel change 1
    new["b"] = ("F32", np.ones(4, "<f4") * 1.5)  # rel change 0.5
    del new["c"]
    new["e"] = ("F32", np.array([np.nan, 1], "<f4"))
    new["d"] = ("F16", np.ones((4,), "<f2"))  # shape change
    return new


class Recording(StoredSide):
    """A stored side that remembers which tensors were read."""

    def __init__(self, inner: StoredSide) -> None:
        super().__init__(inner.meta, inner.store, label=inner.label)
        self.loaded: list[str] = []

    def load(self, name):
        self.loaded.append(name)
        return super().load(name)


@pytest.fixture
def store(tmp_path):
    return ObjectStore(tmp_path / "lfs")


def test_statuses_order_and_reads(store):
    old = Recording(stored_side(store, BASE, "old"))
    new = Recording(stored_side(store, edited(), "new"))
    result = compare("m.safetensors", old, new)
    assert [(p.name, p.status) for p in result.params] == [
        ("a", "modified"),
        ("b", "modified"),
        ("d", "modified"),
        ("e", "added"),
        ("c", "removed"),
    ]
    assert result.counts == {"added": 1, "removed": 1, "modified": 3, "unchanged": 0}
    assert result.params[0].relative_change == pytest.approx(1.0)
    assert result.params[2].note == "shape changed" and result.params[2].stats is None
    # Only modified tensors of the same shape are read; added ones only when asked.
    assert sorted(old.loaded) == sorted(new.loaded) == ["a", "b"]


def test_unchanged_tensors_are_never_read(store):
    old = Recording(stored_side(store, BASE))
    new = Recording(stored_side(store, BASE))
    result = compare("m", old, new, CompareOptions(nonfinite=True, unchanged=True))
    assert not result.changed
    assert {p.status for p in result.params} == {"unchanged"}
    assert old.loaded == new.loaded == []


def test_nonfinite_reads_added_tensors_and_param_filter(store):
    old, new = stored_side(store, BASE), stored_side(store, edited())
    result = compare("m", old, new, CompareOptions(stats=False, nonfinite=True, params=("e", "a")))
    by_name = {p.name: p for p in result.params}
    assert set(by_name) == {"a", "e"}
    assert str(by_name["e"].nonfinite) == "1 NaN"
    assert by_name["a"].stats is None and not by_name["a"].nonfinite


def test_a_file_side_compares_like_a_stored_one(store, tmp_path):
    stored = compare("m", stored_side(store, BASE), stored_side(store, edited()))
    filed = compare("m", stored_side(store, BASE), file_side(tmp_path, edited()))
    reverse = compare("m", file_side(tmp_path, BASE, "old"), stored_side(store, edited()))
    both = compare("m", file_side(tmp_path, BASE, "old"), file_side(tmp_path, edited(), "new"))
    for other in (filed, reverse, both):
        assert [(p.name, p.status, p.stats) for p in other.params] == [
            (p.name, p.status, p.stats) for p in stored.params
        ]
    assert filed.stored_bytes is None and stored.stored_bytes > 0


def test_absent_sides_are_added_and_removed_files(store):
    added = compare("m", None, stored_side(store, BASE))
    assert added.status == "added" and added.counts["added"] == 4
    removed = compare("m", stored_side(store, BASE), None)
    assert removed.status == "removed" and removed.counts["removed"] == 4


def test_missing_objects_are_named_with_the_fetch_command(store):
    old, new = stored_side(store, BASE, "HEAD~1:m"), stored_side(store, edited(), "HEAD:m")
    for name in ("a", "b"):
        store.path(new.meta.params[name].object.oid).unlink()
    result = compare("m", old, new)
    assert result.missing == ("a (HEAD:m)", "b (HEAD:m)")
    assert {p.name: p.note for p in result.params}["a"] == "objects not fetched"
    with pytest.raises(MissingObjectError) as info:
        raise_for_missing([result])
    assert str(info.value) == (
        "objects not in the local store for 2 parameter(s): m: a (HEAD:m); m: b (HEAD:m); "
        "fetch them with `git theta fetch`"
    )
