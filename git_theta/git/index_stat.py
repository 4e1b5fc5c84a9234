"""Stat data for index entries, written into Git's index file the way Git writes it.

After a direct checkout the index holds the stat data of the small metadata file Git wrote,
not of the checkpoint now at that path. The plumbing way to fix that, `git add --refresh`,
makes Git feed the whole checkpoint to the clean filter to learn a blob id we already know
(0.4 s per GiB measured, as long as the decode itself). So the finisher sets those entries'
stat fields itself: under Git's lock (`index.lock`, taken with O_EXCL as Git takes it), only
on stage-0 entries whose blob is exactly the metadata the file was written from, with the
file's stat as Git's `fill_stat_data` records it; every other byte stays as Git wrote it,
except that entries Git would have found racily clean get their size cleared (Git's own
`ce_smudge_racily_clean_entry` rule, see `_smudge_racy`); then the trailing checksum.

Format: Git's Documentation/gitformat-index.txt, versions 2 to 4. Anything this module does
not know to be safe gives up before writing and the caller refreshes through Git: a split
index (`link` extension), an index named by GIT_INDEX_FILE, a bad checksum, an index locked
by a running Git command.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Collection, Mapping
from pathlib import Path

__all__ = ["blob_id", "set_stat", "staged_blobs"]

_STAT = struct.Struct(">10I")  # ctime s, ns; mtime s, ns; dev, ino, mode, uid, gid, size
_ENTRY_FIXED = _STAT.size  # then the object id, then 16 bits of flags
_EXTENDED = 0x4000
_STAGE = 0x3000
_NAME_MASK = 0x0FFF
_SKIP_WORKTREE = 0x4000  # in the second flags word (versions 3 and 4)
_INTENT_TO_ADD = 0x2000
_GITLINK = 0o160000
_MTIME_SEC = 2  # indexes of words in _STAT
_MODE = 6
_SIZE = 9
_WORD = struct.Struct(">I")


class _Unsupported(Exception):
    """The index is not one this module may rewrite; the caller refreshes through Git."""


def blob_id(data: bytes, object_format: str = "sha1") -> bytes:
    """The binary object id Git gives a blob holding `data`."""
    h = hashlib.new(object_format)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.digest()


def staged_blobs(
    git_dir: Path, paths: Collection[str], object_format: str = "sha1"
) -> dict[str, bytes]:
    """The blob id of each of `paths`' stage-0 entries in the index of `git_dir` (paths
    without one left out); empty when the index cannot be read. Takes no lock: a hint for
    `set_stat`, which checks again under the lock."""
    if "GIT_INDEX_FILE" in os.environ or not paths:
        return {}
    hash_len = hashlib.new(object_format).digest_size
    wanted = {p.encode("utf-8", "surrogateescape"): p for p in paths}
    try:
        buf = bytearray((git_dir / "index").read_bytes())
        if len(buf) < 12 + hash_len or buf[:4] != b"DIRC":
            return {}
        (version,) = struct.unpack_from(">I", buf, 4)
        if version not in (2, 3, 4):
            return {}
        found: dict[str, bytes] = {}
        for start, name, flags, _extra in _entries(buf, version, hash_len, wanted)[1]:
            path = wanted.get(name) if name is not None else None
            if path is not None and not flags & _STAGE:
                at = start + _ENTRY_FIXED
                found[path] = bytes(buf[at : at + hash_len])
        return found
    except (OSError, _Unsupported, struct.error, ValueError, IndexError):
        return {}


def set_stat(
    git_dir: Path, entries: Mapping[str, tuple[bytes, os.stat_result]], object_format: str = "sha1"
) -> set[str]:
    """Record `path -> (blob id, stat)` in the index of `git_dir` for each path whose stage-0
    entry holds that blob. Returns the paths recorded; an empty set when the index could not
    be rewritten (locked, split, unreadable), which leaves it as it was."""
    if "GIT_INDEX_FILE" in os.environ or not entries:
        return set()
    index = git_dir / "index"
    lock = git_dir / "index.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        return set()  # a Git command holds the index (or cannot be written): Git refreshes later
    try:
        with open(index, "rb") as f:
            before = os.fstat(f.fileno())
            buf = bytearray(f.read())
        done = _rewrite(buf, entries, hashlib.new(object_format).digest_size, before.st_mtime)
        if not done:
            os.close(fd)
            fd = -1
            os.unlink(lock)
            return set()
        with os.fdopen(fd, "wb") as out:
            fd = -1
            out.write(buf)
            os.fchmod(out.fileno(), before.st_mode & 0o7777)
        os.replace(lock, index)
        return done
    except (OSError, _Unsupported, struct.error, ValueError):
        if fd >= 0:
            os.close(fd)
        lock.unlink(missing_ok=True)
        return set()


def _rewrite(
    buf: bytearray,
    entries: Mapping[str, tuple[bytes, os.stat_result]],
    hash_len: int,
    index_mtime: float,
) -> set[str]:
    if len(buf) < 12 + hash_len or buf[:4] != b"DIRC":
        raise _Unsupported("not an index")
    (version,) = struct.unpack_from(">I", buf, 4)
    if version not in (2, 3, 4):
        raise _Unsupported(f"index version {version}")
    trailer = bytes(buf[-hash_len:])
    skip_hash = trailer == bytes(hash_len)  # index.skipHash: Git writes no checksum
    if not skip_hash and _checksum(buf, hash_len) != trailer:
        raise _Unsupported("index checksum mismatch")
    wanted = {p.encode("utf-8", "surrogateescape"): p for p in entries}
    done: set[str] = set()
    index_second = int(index_mtime)
    entries_end, found = _entries(buf, version, hash_len, wanted)
    for start, name, flags, extra in found:
        path = wanted.get(name) if name is not None else None
        ours = (
            path is not None
            and not flags & _STAGE
            and not extra & (_SKIP_WORKTREE | _INTENT_TO_ADD)
            and buf[start + _ENTRY_FIXED : start + _ENTRY_FIXED + hash_len] == entries[path][0]
        )
        if ours:
            assert path is not None
            _STAT.pack_into(buf, start, *_git_stat(entries[path][1], _STAT.unpack_from(buf, start)))
            done.add(path)
        elif index_second:
            _smudge_racy(buf, start, index_second)
    _check_extensions(buf, entries_end, len(buf) - hash_len)
    if done and not skip_hash:
        buf[-hash_len:] = _checksum(buf, hash_len)
    return done


def _checksum(buf: bytearray, hash_len: int) -> bytes:
    """The index's trailing hash: SHA-1 or SHA-256 (by its length) of all that precedes it."""
    with memoryview(buf) as view:
        return hashlib.new({20: "sha1", 32: "sha256"}[hash_len], view[:-hash_len]).digest()


def _git_stat(st: os.stat_result, old: tuple[int, ...]) -> tuple[int, ...]:
    """The ten stat words as Git's fill_stat_data stores them (each cut to 32 bits); the mode
    stays the entry's (Git chose it from the tree and the finisher gave the file the same)."""
    m32 = 0xFFFFFFFF
    return (
        int(st.st_ctime) & m32,
        st.st_ctime_ns % 1_000_000_000,
        int(st.st_mtime) & m32,
        st.st_mtime_ns % 1_000_000_000,
        st.st_dev & m32,
        st.st_ino & m32,
        old[6],
        st.st_uid & m32,
        st.st_gid & m32,
        st.st_size & m32,
    )


def _smudge_racy(buf: bytearray, start: int, index_second: int) -> None:
    """Clear the size of an entry whose file changed in the second the old index was written,
    or later (Git's racy-git rule, read-cache.c `is_racy_stat`). Git re-reads such entries
    because a same-size write within that second leaves the stat data equal; the index we
    write is newer, and would make Git trust them. A cleared size makes Git compare content
    (read-cache.c `ie_modified`), as it would have for a racy entry."""
    if (
        _WORD.unpack_from(buf, start + 4 * _MTIME_SEC)[0] >= index_second
        and _WORD.unpack_from(buf, start + 4 * _MODE)[0] & 0o170000 != _GITLINK
    ):
        _WORD.pack_into(buf, start + 4 * _SIZE, 0)


def _entries(
    buf: bytearray, version: int, hash_len: int, wanted: Collection[bytes]
) -> tuple[int, list[tuple[int, bytes | None, int, int]]]:
    """Where the entries end, and each one's (offset, path, flags, extended flags); the path
    only for entries whose path may be in `wanted` (None for the rest: a large index is
    walked in Python, and making every path a bytes object was most of the time)."""
    found: list[tuple[int, bytes | None, int, int]] = []
    (count,) = struct.unpack_from(">I", buf, 8)
    lengths = {len(w) for w in wanted}
    pos = 12
    previous = b""
    fixed = _ENTRY_FIXED + hash_len
    for _ in range(count):
        start = pos
        at = start + fixed
        flags = buf[at] << 8 | buf[at + 1]
        at += 2
        extra = 0
        if flags & _EXTENDED:
            if version < 3:
                raise _Unsupported("extended flags in a version 2 index")
            extra = buf[at] << 8 | buf[at + 1]
            at += 2
        name: bytes | None
        if version == 4:
            strip, at = _varint(buf, at)
            end = buf.index(b"\0", at)
            if strip > len(previous):
                raise _Unsupported("bad path prefix")
            name = previous = previous[: len(previous) - strip] + bytes(buf[at:end])
            pos = end + 1
        else:
            length = flags & _NAME_MASK
            end = at + length if length < _NAME_MASK else buf.index(b"\0", at)
            if buf[end] != 0:
                raise _Unsupported("path not terminated")
            name = bytes(buf[at:end]) if end - at in lengths else None
            pos = start + ((at - start + (end - at) + 8) & ~7)
        found.append((start, name, flags, extra))
    return pos, found


def _varint(buf: bytearray, at: int) -> tuple[int, int]:
    """Git's offset varint (varint.c), as index version 4 stores the prefix to strip."""
    c = buf[at]
    at += 1
    value = c & 0x7F
    while c & 0x80:
        c = buf[at]
        at += 1
        value = ((value + 1) << 7) | (c & 0x7F)
    return value, at


def _check_extensions(buf: bytearray, pos: int, end: int) -> None:
    while pos < end:
        signature = bytes(buf[pos : pos + 4])
        (size,) = struct.unpack_from(">I", buf, pos + 4)
        if signature == b"link":
            raise _Unsupported("split index")  # entries live partly in a shared index file
        pos += 8 + size
    if pos != end:
        raise _Unsupported("extensions overrun the index")
