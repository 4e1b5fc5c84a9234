"""A direct checkout copies the tensors the previous checkout of the same path shares with
the new version from the kept link to that file (git_theta/kept.py), and decodes the rest.

The threshold is lowered so the small test checkpoint takes the direct path; the trace file
(GIT_THETA_CHECKOUT_TRACE) says how many tensors were copied. Every checkout is compared
byte for byte with the committed version's smudge (`git cat-file --filters`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from testing.checkpoints import write_safetensors
from tests.end_to_end.test_direct_checkout import Direct

MODEL = "model.safetensors"
TENSORS = 7  # tests/end_to_end/conftest.py SHAPES


class Reuse(Direct):
    def __init__(self, scratch, tmp_path: Path) -> None:
        super().__init__(scratch, tmp_path)  # threshold lowered, trace on, v1 and v2 committed
        self.kept = self.s.repo / ".git" / "theta" / "checkout" / "kept"

    def checkout(self, *args: str) -> list[str]:
        self.trace.unlink(missing_ok=True)
        self.git("checkout", "-q", *args)
        lines = self.trace.read_text().splitlines()
        assert f"finished - {MODEL}" in lines, lines
        committed = self.env.run(["git", "cat-file", "--filters", f"HEAD:{MODEL}"], cwd=self.s.repo)
        assert self.s.path.read_bytes() == committed.stdout
        assert self.git("status", "--porcelain") == ""
        return lines

    def kept_files(self) -> list[Path]:
        return sorted(p for p in self.kept.iterdir() if not p.name.endswith(".map"))


@pytest.fixture
def r(scratch, tmp_path) -> Reuse:
    return Reuse(scratch, tmp_path)


def test_switching_back_copies_what_both_versions_share(r):
    # The file being replaced was written by the user and kept by the `git add` that cleaned
    # it (git_theta/cleaned.py): the first checkout after it already reuses.
    assert f"reused {TENSORS - 1} {MODEL}" in r.checkout("HEAD~1")
    assert r.s.path.read_bytes() == r.v1

    assert f"reused {TENSORS - 1} {MODEL}" in r.checkout("main")
    assert r.s.path.read_bytes() == r.v2
    assert f"reused {TENSORS - 1} {MODEL}" in r.checkout("HEAD~1")
    assert r.s.path.read_bytes() == r.v1
    # A new header (so offsets move) over the same tensors: every tensor is copied.
    r.checkout("main")
    write_safetensors(r.s.path, r.s.params, metadata={"format": "pt", "note": "moved"})
    r.git("commit", "-q", "-am", "v3: header only")
    v3 = r.s.path.read_bytes()
    r.checkout("HEAD~1")
    assert f"reused {TENSORS} {MODEL}" in r.checkout("main")
    assert r.s.path.read_bytes() == v3 != r.v2


def test_kept_copy_is_a_link_to_the_work_tree_file(r):
    r.checkout("HEAD~1")
    (kept,) = r.kept_files()
    assert os.stat(kept).st_ino == os.stat(r.s.path).st_ino
    assert os.stat(r.s.path).st_nlink == 2
    info = json.loads(kept.with_name(kept.name + ".map").read_text())
    assert info["path"] == MODEL and len(info["tensors"]) == TENSORS


def test_the_link_comes_before_the_stat_record(r, tmp_path):
    """Linking changes the file's ctime. The written record (which lets the index refresh
    skip hashing the file) must hold the stat taken after the link, and `git status` must then
    find the index up to date without starting the filter."""
    r.checkout("HEAD~1")
    r.checkout("main")
    (record,) = (r.s.repo / ".git" / "theta" / "checkout" / "written").iterdir()
    st = os.stat(r.s.path)
    header = json.loads(record.read_bytes().partition(b"\n")[0])
    assert header["stat"] == [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    events = tmp_path / "trace2.json"
    r.env.env["GIT_TRACE2_EVENT"] = str(events)
    try:
        assert r.git("status", "--porcelain") == ""
    finally:
        del r.env.env["GIT_TRACE2_EVENT"]
    started = [json.loads(e) for e in events.read_text().splitlines() if '"child_start"' in e]
    assert not [e for e in started if "filter-process" in " ".join(e.get("argv", []))], started


def test_a_kept_copy_edited_in_place_is_checked_not_trusted(r):
    """A tool that rewrites the checkpoint in place and restores its mtime leaves the identity
    as recorded: every copied tensor is hashed, and the one that differs is decoded."""
    r.checkout("HEAD~1")
    data = r.s.path.read_bytes()
    start = 8 + int.from_bytes(data[:8], "little")
    begin, end = json.loads(data[8:start])["layers.0.attn.weight"]["data_offsets"]
    before = os.stat(r.s.path)
    with open(r.s.path, "r+b") as f:
        f.seek(start + begin)
        f.write(b"\xff" * (end - begin))
    os.utime(r.s.path, ns=(before.st_atime_ns, before.st_mtime_ns))

    lines = r.checkout("-f", "main")
    assert f"reused {TENSORS - 2} {MODEL}" in lines, lines
    assert r.s.path.read_bytes() == r.v2


def test_a_rewritten_kept_copy_is_not_used(r):
    r.checkout("HEAD~1")
    r.s.write(r.s.edited("norm.scale", delta=3.0))  # same size, new mtime
    lines = r.checkout("-f", "main")
    assert not any(line.startswith("reused") for line in lines), lines
    assert r.s.path.read_bytes() == r.v2


def test_a_removed_checkpoint_leaves_no_hidden_copy(r):
    r.checkout("HEAD~1")
    r.git("checkout", "-q", "main")
    r.git("rm", "-q", MODEL)
    r.git("commit", "-q", "-m", "gone")
    (kept,) = r.kept_files()
    assert os.stat(kept).st_nlink == 1  # only the kept link holds those bytes now
    out = r.env.theta("prune", cwd=r.s.repo).stdout.decode()
    assert "removed the kept copies" in out, out
    assert r.kept_files() == []


def test_the_previous_version_is_rewritten_where_it_changed(r):
    """Same layout: the kept file itself becomes the new checkpoint, only the changed tensor
    written into it (no second copy of the checkpoint's pages)."""
    r.checkout("HEAD~1")
    inode = os.stat(r.s.path).st_ino
    lines = r.checkout("main")
    assert f"rewrote - {MODEL}" in lines, lines
    assert os.stat(r.s.path).st_ino == inode
    assert r.s.path.read_bytes() == r.v2


def test_a_checkpoint_linked_elsewhere_is_never_rewritten(r):
    """A user's own hard link to the checked-out file must keep its bytes: the kept file is
    copied from, not rewritten, while anything but our link names it."""
    r.checkout("HEAD~1")
    backup = r.s.repo.parent / "backup.safetensors"
    os.link(r.s.path, backup)
    lines = r.checkout("main")
    assert not any(line.startswith("rewrote") for line in lines), lines
    assert f"reused {TENSORS - 1} {MODEL}" in lines
    assert backup.read_bytes() == r.v1
    assert r.s.path.read_bytes() == r.v2


def test_git_add_keeps_the_users_file_and_records_its_stat_data(r):
    """The add links the file it cleaned (ctime changes) and records the stat data after the
    link in the index, so plumbing that never refreshes finds it clean; the user's mtime and
    bytes stay as they were."""
    data = r.s.write(r.s.edited("norm.scale", delta=2.0))
    before = os.stat(r.s.path)
    r.git("add", MODEL)
    after = os.stat(r.s.path)
    assert after.st_nlink == 2 and after.st_mtime_ns == before.st_mtime_ns
    assert after.st_ctime_ns != before.st_ctime_ns or after.st_nlink != before.st_nlink
    assert r.s.path.read_bytes() == data
    assert r.git("diff-files", "--name-only", "--", MODEL) == ""
    (kept,) = r.kept_files()
    assert os.stat(kept).st_ino == after.st_ino
    r.git("commit", "-q", "-m", "v3")
    lines = r.checkout("HEAD~1")
    assert f"rewrote - {MODEL}" in lines and f"reused {TENSORS - 1} {MODEL}" in lines, lines
    assert r.s.path.read_bytes() == r.v2


def test_a_file_saved_over_in_place_after_the_add_is_kept_again(r):
    """Training loops save over the same file: the inode the last add kept is rewritten (its
    kept copy with it, which no longer matches its map), and the next add keeps it anew."""
    r.s.write(r.s.edited("embed.weight", delta=3.0))
    r.git("commit", "-q", "-am", "v3")
    assert os.stat(r.s.path).st_nlink == 2
    lines = r.checkout("HEAD~1")
    assert f"reused {TENSORS - 1} {MODEL}" in lines, lines
    assert r.s.path.read_bytes() == r.v2


def test_a_file_the_user_links_elsewhere_is_not_kept(r):
    backup = r.s.repo.parent / "mine.safetensors"
    r.s.path.unlink()  # a new file: the kept copy of v2 is another inode
    r.s.write(r.s.edited("norm.scale", delta=2.0))
    os.link(r.s.path, backup)
    r.git("commit", "-q", "-am", "v3")
    assert os.stat(r.s.path).st_nlink == 2  # the user's link, not ours
    assert r.kept_files() == [] or all(
        os.stat(k).st_ino != os.stat(r.s.path).st_ino for k in r.kept_files()
    )
    mine = backup.read_bytes()
    r.checkout("HEAD~1")  # may rewrite v2's own kept file, never the user's
    assert backup.read_bytes() == mine
    assert r.s.path.read_bytes() == r.v2


def test_content_git_cleans_from_elsewhere_is_not_kept(r):
    """`git hash-object --path` cleans other bytes under the checkpoint's name: the index does
    not hold their metadata, so the work-tree file is neither kept for it nor recorded."""
    other = r.s.repo.parent / "other.safetensors"
    write_safetensors(other, r.s.edited("norm.scale", delta=5.0))
    kept_before = {k: os.stat(k).st_ino for k in r.kept_files()}
    r.git("hash-object", "-w", f"--path={MODEL}", str(other))
    assert {k: os.stat(k).st_ino for k in r.kept_files()} == kept_before
    assert r.git("status", "--porcelain") == ""
    assert r.s.path.read_bytes() == r.v2


def test_a_checkpoint_another_program_has_mapped_is_never_rewritten(r):
    """A program that memory-mapped the checkpoint (safetensors' safe_open does) keeps reading
    that file after Git unlinks its name: its bytes must not change under it."""
    import mmap

    r.checkout("HEAD~1")
    with open(r.s.path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    try:
        lines = r.checkout("main")
        assert not any(line.startswith("rewrote") for line in lines), lines
        assert f"reused {TENSORS - 1} {MODEL}" in lines, lines
        assert mapped[:] == r.v1
        assert r.s.path.read_bytes() == r.v2
    finally:
        mapped.close()


def test_after_the_add_keeps_the_file_git_does_not_read_it_again(r, tmp_path):
    """The link changes the file's ctime after Git took its stat data; without the index
    update the next `git status` and `git commit` would feed the whole file to the filter."""
    r.s.write(r.s.edited("norm.scale", delta=2.0))
    # Saved a while ago: a file written in the second its index is written is "racily clean",
    # and Git reads it again whatever git-theta does (as for any file).
    past = time.time() - 60
    os.utime(r.s.path, (past, past))
    r.git("add", MODEL)
    st = os.stat(r.s.path)
    assert st.st_nlink == 2  # kept
    # The index holds the ctime the link left (Git records nanoseconds, though a Git built
    # without USE_NSEC compares whole seconds: a link in a later second than Git's own stat,
    # as when adding a large file, would otherwise make it read the file again).
    debug = r.git("ls-files", "--debug", MODEL)
    assert f"ctime: {int(st.st_ctime)}:{st.st_ctime_ns % 10**9}" in debug, debug
    events = tmp_path / "trace2.json"
    proc = r.env.run(
        ["git", "status", "--porcelain"], cwd=r.s.repo, env={"GIT_TRACE2_EVENT": str(events)}
    )
    assert proc.stdout.decode() == f"M  {MODEL}\n"
    r.env.run(
        ["git", "commit", "-q", "-m", "v3"], cwd=r.s.repo, env={"GIT_TRACE2_EVENT": str(events)}
    )
    started = [json.loads(line) for line in events.read_text().splitlines()]
    filters = [
        e
        for e in started
        if e.get("event") == "child_start" and "filter-process" in str(e.get("argv"))
    ]
    assert filters == [], filters
