"""Objects on disk: `<root>/objects/ab/cd/<sha256>` (the root: git_theta/store/location.py).

An object is named by the sha256 of its bytes, so Git LFS servers accept it as-is.
Writes go to `<root>/tmp` and are renamed into place: a reader never sees half an object.

Nothing here deletes an object. Several processes may share a store (work trees of one
repository, repositories sharing `theta.storage`), and an object one of them wrote may already
be what another has committed against; objects that nothing references are `git theta prune`'s
to reclaim, under Git's safety rules.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from git_theta.errors import (
    CorruptObjectError,
    MissingObjectError,
    ObjectTooLargeError,
    StoreError,
    StoreWriteError,
)
from git_theta.limits import DEFAULT_MAX_OBJECT_BYTES
from git_theta.metadata import ObjectRef, is_oid
from git_theta.store.blocks import ObjectBlocks
from git_theta.store.serialize import read_object
from git_theta.tensor import BufferPool, RawTensor

__all__ = ["TMP_PREFIX", "ObjectStore"]

# Temp files of object writes start with this, so cleaning `tmp/` knows which are ours.
TMP_PREFIX = "object-"

# Chunks smaller than this are gathered and written together: an object of a tiny tensor is a
# header and a few planes, one write instead of six.
_COALESCE_BYTES = 64 * 1024
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Temp names are unique per process (pid and a random token) and per write (a counter), so
# concurrent writers, in this process or others sharing the store, never pick the same file.
_TMP_TOKEN = f"{os.getpid()}-{secrets.token_hex(4)}"
_tmp_counter = itertools.count()


def _write_all(fd: int, chunk: bytes | bytearray | memoryview) -> None:
    n = os.write(fd, chunk)
    if n < len(chunk):  # a short write (a signal, a full pipe): finish it
        view = memoryview(chunk).cast("B")[n:]
        while view:
            view = view[os.write(fd, view) :]


def _rename_into(tmp: str, target: str) -> None:
    """Rename `tmp` to `target`, making the shard directories only when they are missing."""
    try:
        os.replace(tmp, target)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(tmp, target)


class ObjectStore:
    """The objects under one store directory (normally `.git/theta`).

    Args:
        root: the store directory; `objects/` and `tmp/` are created inside on first write.
        legacy_dir: an older store in the same `ab/cd/<oid>` layout that reads fall back to
            (`.git/lfs/objects` of a repository whose objects are not all migrated yet, see
            git_theta/store/migrate.py); never written to.
    """

    def __init__(self, root: Path, *, legacy_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / "objects"
        self.tmp_dir = self.root / "tmp"
        self.legacy_dir = legacy_dir
        # The largest tensor an object may declare (`theta.maxObjectBytes`; location.py).
        self.max_object_bytes = DEFAULT_MAX_OBJECT_BYTES
        self._objects_str = str(self.objects_dir)
        self._tmp_str = str(self.tmp_dir)

    def path(self, oid: str) -> Path:
        """Where object `oid` lives. Only a sha256 (64 lowercase hex digits) is ever turned into
        a path: anything else, whatever code path it came by, is refused.

        Raises:
            StoreError: `oid` is not an object id.
        """
        if not is_oid(oid):
            raise StoreError(f"refusing object id {repr(oid)[:80]}: not 64 lowercase hex digits")
        return self.objects_dir / oid[0:2] / oid[2:4] / oid

    def locate(self, oid: str) -> Path:
        """Where object `oid` can be read: its place in the store, else its place in the
        legacy store if it is there (an object being migrated may be in either)."""
        path = self.path(oid)
        if self.legacy_dir is None or path.exists():
            return path
        old = self.legacy_dir / oid[0:2] / oid[2:4] / oid
        return old if old.exists() else path

    def _open(self, oid: str) -> BinaryIO:
        """The object's file, open for reading; MissingObjectError when it is nowhere."""
        for _ in range(2):  # a migration may move it between `locate` and `open`
            try:
                return self.locate(oid).open("rb")
            except FileNotFoundError:
                continue
        raise MissingObjectError(f"object {oid} is missing", [oid])

    def has(self, ref: ObjectRef) -> bool:
        try:
            return self.locate(ref.oid).stat().st_size == ref.size
        except FileNotFoundError:
            return False

    def put(
        self, chunks: Iterable[bytes | memoryview], *, expected: ObjectRef | None = None
    ) -> ObjectRef:
        """Store the object whose bytes are `chunks`, hashing as it writes; returns its
        reference. An object already present is left as it is.

        Args:
            expected: the reference the bytes must have (a download); if they do not,
                CorruptObjectError is raised and nothing enters the store.
        """
        # A checkpoint of many small tensors puts one object per tensor: per object this costs
        # one create, the writes, a stat and a rename, and a directory only when one is missing
        # (mkstemp, an mkdir per call and file objects were most of a 20,000-tensor add).
        try:
            fd, tmp = self._create_tmp()
        except OSError as exc:
            raise self._write_error(exc) from None
        placed = False
        try:
            ref = self._write_chunks(fd, chunks)
            if expected is not None and ref != expected.whole:
                raise CorruptObjectError(
                    f"bytes received for object {expected.oid} do not match it; nothing was stored"
                )
            placed = self._settle(tmp, ref)
            return ref
        finally:
            if not placed:
                with suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _write_chunks(self, fd: int, chunks: Iterable[bytes | memoryview]) -> ObjectRef:
        """Write `chunks` to `fd` (closed after), hashing them; the reference they make."""
        digest = hashlib.sha256()
        size = 0
        small = bytearray()  # small chunks (an object header, planes of a tiny tensor)
        try:
            # Only the writes are the store's failures; reading `chunks` (a download, a
            # checkpoint) raises its own errors.
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                if len(chunk) < _COALESCE_BYTES:
                    small += chunk
                    if len(small) >= _COALESCE_BYTES:
                        self._write(fd, small)
                        small = bytearray()
                    continue
                if small:
                    self._write(fd, small)
                    small = bytearray()
                self._write(fd, chunk)
            if small:
                self._write(fd, small)
        finally:
            os.close(fd)
        return ObjectRef(digest.hexdigest(), size)

    def _settle(self, tmp: str, ref: ObjectRef) -> bool:
        """Move the written temp file `tmp` to its place, unless the object is there already
        (then it is freshened). Whether `tmp` was moved."""
        # Our own hexdigest, so the path needs no check; built as a string because pathlib
        # costs more than the syscalls here.
        target = os.path.join(self._objects_str, ref.oid[0:2], ref.oid[2:4], ref.oid)
        try:
            existing = os.stat(target).st_size
        except FileNotFoundError:
            self._place(tmp, target)
            return True
        if existing != ref.size:
            raise StoreError(
                f"object {ref.oid} in {self.objects_dir} has the wrong size; "
                "delete it and run the command again"
            )
        # Freshen it, as git freshens a loose object it would have written: `git theta
        # prune` never deletes a recently touched object, and the metadata naming it may
        # reach the index only when this git command ends. If prune took it meanwhile,
        # store this copy (docs/design.md, "Prune and concurrent writers").
        try:
            os.utime(target)
        except FileNotFoundError:
            self._place(tmp, target)
            return True
        except PermissionError:
            pass  # another user's file in a shared store, where prune does not run
        return False

    def _create_tmp(self) -> tuple[int, str]:
        """A new, empty temp file in `tmp_dir` (made if absent), open for writing."""
        while True:
            name = os.path.join(self._tmp_str, f"{TMP_PREFIX}{_TMP_TOKEN}-{next(_tmp_counter)}")
            try:
                return os.open(name, _TMP_FLAGS, 0o600), name
            except FileExistsError:  # left by an earlier process with our pid: next name
                continue
            except FileNotFoundError:
                self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def _write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        try:
            _write_all(fd, data)
        except OSError as exc:
            raise self._write_error(exc) from None

    def _place(self, tmp: str, target: str) -> None:
        try:
            _rename_into(tmp, target)
        except OSError as exc:
            raise self._write_error(exc) from None

    def _write_error(self, exc: OSError) -> StoreWriteError:
        """A full disk (ENOSPC), a file size limit (EFBIG), a read-only or foreign store: the
        caller gets one line naming the store, and `put` removes its temp file."""
        return StoreWriteError(
            f"cannot write to the object store {self.root}: {exc.strerror or exc}",
            path=self.root,
            errno=exc.errno,
        )

    def get(self, ref: ObjectRef) -> bytes:
        """The bytes of an object, verified against its oid.

        Raises:
            MissingObjectError: the object is not in the store.
            CorruptObjectError: its bytes do not hash to its oid.
        """
        with self._open(ref.oid) as f:
            blob = f.read()
        if len(blob) != ref.size or hashlib.sha256(blob).hexdigest() != ref.oid:
            raise CorruptObjectError(
                f"object {ref.oid} is corrupt (its bytes do not match its oid)"
            )
        return blob

    def load_tensor(self, ref: ObjectRef, *, buffers: BufferPool | None = None) -> RawTensor:
        """Decode an object straight from its file, verifying it as it reads.

        An object whose header records its content hash is verified by that hash over the
        decoded tensor: a changed byte breaks the header or a frame, or changes the decoded
        bytes. Older objects are checked by the sha256 of their bytes against the oid. An
        object's name was checked when it entered the store: `put` hashes all it writes.

        Raises:
            MissingObjectError: the object is not in the store.
            CorruptObjectError: it has the wrong size, does not decode, or fails its check.
        """
        return self.load_hashed(ref, buffers=buffers)[0]

    def load_hashed(
        self, ref: ObjectRef, *, buffers: BufferPool | None = None
    ) -> tuple[RawTensor, str]:
        """`load_tensor`, and the content hash of the tensor (computed as it decoded).

        A pack member (git_theta/store/pack.py) is read alone and verified by the content hash
        its own header must carry (one without is refused: its bytes are not the oid's).
        """
        with self._reading(ref) as source:
            decoded = read_object(
                source, buffers=buffers, hash_all=False, max_bytes=self.max_object_bytes
            )
        if decoded.size != ref.stored or decoded.sha256 not in (None, ref.oid):
            raise CorruptObjectError(
                f"object {ref.oid} is corrupt (its bytes do not match its oid)"
            )
        return decoded.tensor, decoded.content_hash

    @contextmanager
    def blocks(self, ref: ObjectRef) -> Iterator[ObjectBlocks]:
        """The object's blocks, to decode one at a time (git_theta/store/blocks.py); the
        caller verifies the blocks it decoded with `ObjectBlocks.verify`.

        Raises:
            MissingObjectError, CorruptObjectError, ObjectTooLargeError: as `load_tensor`.
        """
        with self._reading(ref) as source:
            yield ObjectBlocks(source, self.max_object_bytes)

    @contextmanager
    def _reading(self, ref: ObjectRef) -> Iterator[BinaryIO]:
        """The object's bytes as a stream (a pack member alone), once its file has the size
        the reference says; CorruptObjectError and ObjectTooLargeError raised while it is read
        name the object."""
        with self._open(ref.oid) as f:
            try:
                if os.fstat(f.fileno()).st_size != ref.size:
                    raise CorruptObjectError("its size does not match its reference")
                source: BinaryIO = f
                if ref.offset is not None and ref.length is not None:
                    source = io.BytesIO(os.pread(f.fileno(), ref.length, ref.offset))
                yield source
            except CorruptObjectError as exc:
                raise CorruptObjectError(f"object {ref.oid} is corrupt ({exc})") from None
            except ObjectTooLargeError as exc:
                raise ObjectTooLargeError(f"object {ref.oid} {exc}") from None

    def missing(self, refs: list[ObjectRef]) -> list[ObjectRef]:
        """The refs whose objects are not present (by name and size)."""
        return [ref for ref in refs if not self.has(ref)]
