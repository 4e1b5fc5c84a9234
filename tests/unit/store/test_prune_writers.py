"""prune against a concurrent writer: the freshening rule and the rename-then-look-again
delete, on a real store directory (the interleavings are made by hand, step by step)."""

from __future__ import annotations

import os
import time

from git_theta.store import ObjectStore, encode_object
from git_theta.store.prune import FRESH_OBJECT_SECONDS, PrunePlan, delete
from git_theta.tensor import RawTensor


def _blob(value: int) -> bytes:
    tensor = RawTensor("U8", (64,), bytes([value]) * 64)
    return b"".join(bytes(c) for c in encode_object(tensor))


def _aged(store: ObjectStore, value: int) -> tuple[ObjectStore, PrunePlan, bytes]:
    blob = _blob(value)
    ref = store.put([blob])
    path = store.path(ref.oid)
    past = time.time() - 2 * FRESH_OBJECT_SECONDS
    os.utime(path, (past, past))
    return store, PrunePlan(objects=[(path, len(blob))]), blob


def test_an_old_unreferenced_object_is_deleted(tmp_path):
    store, plan, _ = _aged(ObjectStore(tmp_path), 1)
    assert delete(store, plan) == (1, plan.object_bytes)
    assert not plan.objects[0][0].exists()
    assert list(store.tmp_dir.iterdir()) == []  # nothing left aside


def test_a_put_after_the_plan_keeps_the_object(tmp_path):
    store, plan, blob = _aged(ObjectStore(tmp_path), 2)
    store.put([blob])  # a clean reuses it between prune's plan and its delete: freshened
    assert delete(store, plan) == (0, 0)
    assert plan.objects[0][0].read_bytes() == blob


def test_a_put_after_the_delete_stores_the_object_again(tmp_path):
    store, plan, blob = _aged(ObjectStore(tmp_path), 3)
    assert delete(store, plan)[0] == 1
    ref = store.put([blob])
    assert store.path(ref.oid).read_bytes() == blob


def test_a_touch_just_before_the_rename_puts_it_back(tmp_path, monkeypatch):
    store, plan, blob = _aged(ObjectStore(tmp_path), 4)
    path = plan.objects[0][0]
    real_replace = os.replace

    def replace_then_touch(src, dst):
        # The writer's utime lands on the same inode just before prune's rename: after
        # prune's first look at the mtime, before its second.
        real_replace(src, dst)
        if src == path:
            os.utime(dst)

    monkeypatch.setattr(os, "replace", replace_then_touch)
    assert delete(store, plan) == (0, 0)
    monkeypatch.undo()
    assert path.read_bytes() == blob
    assert list(store.tmp_dir.iterdir()) == []


def test_a_fresh_object_an_interrupted_prune_left_aside_is_put_back(tmp_path):
    store = ObjectStore(tmp_path)
    blob = _blob(5)
    ref = store.put([blob])
    aside = store.tmp_dir / f"prune-{ref.oid}-12345"
    os.replace(store.path(ref.oid), aside)  # the prune died before linking it back
    delete(store, PrunePlan())
    assert store.path(ref.oid).read_bytes() == blob
    assert not aside.exists()
