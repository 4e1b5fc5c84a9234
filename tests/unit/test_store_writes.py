"""ObjectStore.put: failures are one StoreWriteError naming the store; an object written again
is marked new (prune's grace period then covers the command using it)."""

from __future__ import annotations

import os
import time

import pytest

from git_theta.errors import StoreWriteError
from git_theta.store import ObjectStore


def test_writing_an_existing_object_again_refreshes_its_mtime(tmp_path):
    store = ObjectStore(tmp_path / "store")
    ref = store.put([b"some object bytes"])
    old = time.time() - 30 * 86400
    os.utime(store.path(ref.oid), (old, old))
    assert store.put([b"some object bytes"]) == ref
    assert store.path(ref.oid).stat().st_mtime > old + 86400
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_store_that_is_not_a_directory_is_one_error_naming_it(tmp_path):
    root = tmp_path / "store"
    root.write_bytes(b"")  # a regular file where the store should be
    with pytest.raises(StoreWriteError) as info:
        ObjectStore(root).put([b"x"])
    assert str(info.value) == f"cannot write to the object store {root}: Not a directory"
    assert info.value.path == root
