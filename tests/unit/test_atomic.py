"""atomic.py: a file is replaced whole or left as it was, and no temp file stays behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from git_theta.atomic import atomic_write, write_bytes


def test_a_failed_write_leaves_the_target_and_no_temp_file(tmp_path: Path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_write_replaces_the_target_keeping_its_mode(tmp_path: Path):
    target = tmp_path / "run.sh"
    target.write_bytes(b"old")
    os.chmod(target, 0o751)
    write_bytes(target, b"new", keep_mode=True, mode=0o644)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.sh"]


def test_a_new_file_gets_the_mode_asked_for(tmp_path: Path):
    target = tmp_path / "hook"
    write_bytes(target, b"#!/bin/sh\n", keep_mode=True, mode=0o755)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
