"""Moving git-theta's objects out of `.git/lfs/objects`: ours move, Git LFS's stay, reads find
objects in either place meanwhile, and two processes migrating at once lose nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

from git_theta.errors import MissingObjectError
from git_theta.metadata import ObjectRef
from git_theta.store import ObjectStore, encode_object
from git_theta.store.migrate import MARKER, migrate, pending
from git_theta.tensor import RawTensor


def _object(seed: int) -> bytes:
    data = np.random.default_rng(seed).standard_normal(64).astype("<f4").tobytes()
    return b"".join(bytes(c) for c in encode_object(RawTensor("F32", (64,), data)))


def _place(root: Path, blob: bytes) -> ObjectRef:
    oid = hashlib.sha256(blob).hexdigest()
    path = root / oid[:2] / oid[2:4] / oid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return ObjectRef(oid, len(blob))


@pytest.fixture
def common(tmp_path: Path) -> Path:
    return tmp_path / "repo.git"


def _legacy(common: Path) -> Path:
    return common / "lfs" / "objects"


def test_reads_fall_back_to_the_legacy_dir(common):
    ref = _place(_legacy(common), _object(1))
    store = ObjectStore(common / "theta", legacy_dir=_legacy(common))
    assert store.has(ref)
    assert store.get(ref) == store.locate(ref.oid).read_bytes()
    assert store.load_tensor(ref).shape == (64,)
    with pytest.raises(MissingObjectError):
        ObjectStore(common / "theta").get(ref)


def test_ours_move_git_lfs_objects_stay(common):
    ours = [_place(_legacy(common), _object(i)) for i in range(4)]
    # A header longer than the first read (a tensor of 5000 dimensions) is still recognised.
    long_header = b"".join(bytes(c) for c in encode_object(RawTensor("U8", (1,) * 5000, b"\1")))
    ours.append(_place(_legacy(common), long_header))
    lfs_blobs = [
        os.urandom(1000),
        msgpack.packb({"v": 1, "size": 3}) + b"abc",  # a msgpack map, but not our header
        b"",
    ]
    theirs = [_place(_legacy(common), blob) for blob in lfs_blobs]
    store = ObjectStore(common / "theta")
    assert pending(common)
    result = migrate(store, common)
    assert (result.moved, result.left) == (5, 0)
    assert not pending(common) and (common / MARKER).is_file()
    for ref in ours:
        assert not (_legacy(common) / ref.oid[:2] / ref.oid[2:4] / ref.oid).exists()
        assert store.get(ref)
    for ref, blob in zip(theirs, lfs_blobs, strict=True):
        assert (_legacy(common) / ref.oid[:2] / ref.oid[2:4] / ref.oid).read_bytes() == blob
        assert not store.path(ref.oid).exists()


def test_two_processes_migrating_at_once_lose_nothing(common):
    blobs = [_object(i) for i in range(300)]
    refs = [_place(_legacy(common), blob) for blob in blobs]
    foreign = _place(_legacy(common), os.urandom(4096))
    code = (
        "import sys; from pathlib import Path; from git_theta.store import ObjectStore; "
        "from git_theta.store.migrate import migrate; c = Path(sys.argv[1]); "
        "r = migrate(ObjectStore(c / 'theta'), c); print(r.moved, r.left)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(common)], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(left == "0" for _, left in outs)
    store = ObjectStore(common / "theta")
    for ref, blob in zip(refs, blobs, strict=True):
        assert store.path(ref.oid).read_bytes() == blob
        assert not (_legacy(common) / ref.oid[:2] / ref.oid[2:4] / ref.oid).exists()
    assert (_legacy(common) / foreign.oid[:2] / foreign.oid[2:4] / foreign.oid).exists()
