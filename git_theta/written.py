"""What a direct checkout wrote (or an add kept), so the clean filter can answer for it
without hashing it.

After a direct checkout writes a checkpoint, Git's index still holds the stat data of the
small metadata file Git wrote first; the finisher gives it the new file's (git/index_stat.py),
but where it cannot (a split index, a locked one) the next `git status` feeds the whole
checkpoint to the clean filter: seconds of hashing for a file whose metadata we already know.
So the finisher records, per path, the file's identity just after its rename (device, inode,
size, mtime_ns, ctime_ns) with the metadata it was written from, and the cleaner answers that
metadata when the file it is asked about still has exactly that identity. A file a `git add`
kept (cleaned.py) is recorded the same way, with the metadata its clean made.

Why that is safe: any write to the file, a truncate, a chmod or a rename over it changes its
ctime, and nothing in user space can set ctime back (utime sets only atime and mtime); a
different file at the path has another inode or device. The cleaner also checks that what
Git streams is what was written (same size, same first 64 KiB by sha256), since Git may clean
content from elsewhere under a path name (`git hash-object --path`). The input is always
read to its end: Git expects the filter to consume it. The one gap: file systems keep time
in clock ticks (a few ms), so a write in the same tick as the finisher's rename that keeps
the size and the first 64 KiB would go unseen (Git closes the same gap for its index by
re-reading "racily clean" files; a write racing a checkout of that very file is out of scope).

Entries live in the per-worktree git dir, one small file per path named by a hash of the
path, written atomically; a stale entry never matches and is overwritten by the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO

from git_theta.atomic import write_bytes
from git_theta.errors import CheckpointError
from git_theta.spool import read_head

__all__ = ["forget", "lookup", "record"]

# Bytes of the stream compared against the file on disk (covers a safetensors header).
HEAD_BYTES = 64 * 1024
READ_BYTES = 1024 * 1024


def _entry_path(git_dir: Path, path: str) -> Path:
    key = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()
    return git_dir / "theta" / "checkout" / "written" / key


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def record(git_dir: Path, path: str, target: Path, metadata: bytes) -> os.stat_result:
    """Remember that `target` (work-tree file `path`) holds what `metadata` describes (just
    written from it, or just cleaned to it); returns the stat the record holds."""
    st = os.stat(target)
    identity = _identity(st)
    with open(target, "rb") as f:
        head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
    header = json.dumps({"path": path, "stat": identity, "head": head}).encode()
    entry = _entry_path(git_dir, path)
    entry.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(entry, header + b"\n" + metadata)
    return st


def forget(git_dir: Path, path: str) -> None:
    _entry_path(git_dir, path).unlink(missing_ok=True)


def lookup(git_dir: Path, worktree: Path, path: str, src: BinaryIO) -> tuple[bytes | None, bytes]:
    """(metadata, b"") when `src` is the unchanged file a direct checkout wrote at `path`;
    `src` has then been read to its end. Otherwise (None, what was read of `src`), which the
    caller puts back in front of it.

    Raises:
        CheckpointError: `src` starts like the file but is not as long (Git is cleaning
            other content under this path name).
    """
    try:
        raw = _entry_path(git_dir, path).read_bytes()
    except OSError:
        return None, b""  # the usual case: one failed open
    header, _, metadata = raw.partition(b"\n")
    try:
        info = json.loads(header)
        if info["path"] != path or info["stat"] != _identity(os.stat(worktree / path)):
            return None, b""
    except (OSError, ValueError, KeyError, TypeError):
        return None, b""
    head = read_head(src, HEAD_BYTES)
    if hashlib.sha256(head).hexdigest() != info.get("head"):
        return None, head
    size = len(head) + _drain(src)
    if size != info["stat"][2]:
        raise CheckpointError(
            f"{path}: the content Git is cleaning is not the file at this path and could "
            "not be read again; run the command again"
        )
    return metadata, b""


def _drain(src: BinaryIO) -> int:
    total = 0
    while chunk := src.read(READ_BYTES):
        total += len(chunk)
    return total
