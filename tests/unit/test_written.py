"""git_theta/written.py: the clean filter answers from the record only for the very file the
finisher wrote, unchanged, and otherwise gives back every byte it read."""

from __future__ import annotations

import io
import os

import pytest

from git_theta import written
from git_theta.errors import CheckpointError

META = b"metadata bytes\n"


@pytest.fixture
def tree(tmp_path):
    git_dir, work = tmp_path / "git", tmp_path / "work"
    git_dir.mkdir()
    work.mkdir()
    data = os.urandom(200_000)
    (work / "m.bin").write_bytes(data)
    written.record(git_dir, "m.bin", work / "m.bin", META)
    return git_dir, work, data


def test_the_unchanged_file_is_answered_and_its_stream_drained(tree):
    git_dir, work, data = tree
    src = io.BytesIO(data)
    assert written.lookup(git_dir, work, "m.bin", src) == (META, b"")
    assert src.read() == b""


@pytest.mark.parametrize("change", ["append", "rewrite same bytes", "chmod"])
def test_any_change_to_the_file_stops_the_answer(tree, change):
    git_dir, work, data = tree
    target = work / "m.bin"
    if change == "append":
        with target.open("ab") as f:
            f.write(b"x")
    elif change == "rewrite same bytes":
        target.write_bytes(data)
    else:
        target.chmod(0o600)
    src = io.BytesIO(data)
    assert written.lookup(git_dir, work, "m.bin", src) == (None, b"")
    assert src.read() == data  # nothing consumed


def test_other_content_under_the_path_is_given_back(tree):
    git_dir, work, data = tree
    other = bytes(reversed(data))
    src = io.BytesIO(other)
    known, consumed = written.lookup(git_dir, work, "m.bin", src)
    assert known is None and consumed + src.read() == other


def test_same_head_but_another_length_is_an_error_not_a_wrong_answer(tree):
    git_dir, work, data = tree
    with pytest.raises(CheckpointError, match="m.bin: the content Git is cleaning"):
        written.lookup(git_dir, work, "m.bin", io.BytesIO(data + b"tail"))


def test_another_path_has_no_record(tree):
    git_dir, work, data = tree
    (work / "n.bin").write_bytes(data)
    assert written.lookup(git_dir, work, "n.bin", io.BytesIO(data)) == (None, b"")
