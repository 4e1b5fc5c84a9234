"""git_theta/kept.py on real files: what a kept copy holds, when it is refused or dropped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from git_theta import kept
from git_theta.metadata import ObjectRef, ParamEntry
from git_theta.placed import SerialWrites
from git_theta.tensor import content_hash

PATH = "model.safetensors"


def _kept(tmp_path: Path, payload: bytes) -> tuple[Path, Path, dict[str, tuple[int, int]]]:
    git_dir = tmp_path / "git"
    target = tmp_path / PATH
    target.write_bytes(b"HEAD" + payload)
    landing = {content_hash(payload): (4, len(payload))}
    kept.keep(git_dir, PATH, target, landing)
    return git_dir, target, landing


def _entry(payload: bytes) -> ParamEntry:
    return ParamEntry("U8", (len(payload),), content_hash(payload), ObjectRef("0" * 64, 1))


def _copy_to(tmp_path: Path, source: kept.Kept, entry: ParamEntry) -> tuple[bool, bytes]:
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        ok = source.copy(entry, SerialWrites(fd), 0)
    finally:
        os.close(fd)
    return ok, out.read_bytes()


def test_a_kept_tensor_is_copied_and_checked(tmp_path):
    payload = np.arange(1000, dtype=np.uint8).tobytes()
    git_dir, target, _ = _kept(tmp_path, payload)
    source = kept.open_kept(git_dir, PATH)
    assert source is not None
    try:
        assert _copy_to(tmp_path, source, _entry(payload)) == (True, payload)
        other = bytes(reversed(payload))
        assert not _copy_to(tmp_path, source, _entry(other))[0]  # not held: nothing copied
    finally:
        source.close()


def test_a_kept_file_changed_since_is_not_opened(tmp_path):
    git_dir, target, _ = _kept(tmp_path, b"x" * 100)
    with open(target, "r+b") as f:  # in place: the kept link sees it too
        f.write(b"more")
    os.utime(target, ns=(0, 0))
    assert kept.open_kept(git_dir, PATH) is None


def test_without_room_for_both_the_only_copy_is_dropped(tmp_path):
    git_dir, target, _ = _kept(tmp_path, b"x" * 100)
    # The work tree still holds the file: dropping our link would free nothing.
    source = kept.open_kept(git_dir, PATH, room=(tmp_path, 2**62))
    assert source is not None
    source.close()
    target.unlink()  # as Git does before it asks for the new version
    assert kept.open_kept(git_dir, PATH, room=(tmp_path, 2**62)) is None
    assert list((git_dir / "theta" / "checkout" / "kept").iterdir()) == []


def test_sweep_drops_copies_nothing_else_links_to(tmp_path):
    git_dir, target, _ = _kept(tmp_path, b"x" * 100)
    assert kept.sweep(git_dir) == 0
    target.unlink()
    assert kept.sweep(git_dir) == 104
    assert list((git_dir / "theta" / "checkout" / "kept").iterdir()) == []
