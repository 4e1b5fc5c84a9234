"""Objects on disk: `<root>/objects/ab/cd/<sha256>` (the root: git_theta/store/location.py).

An object is named by the sha256 of its bytes, so Git LFS servers accept it as-is.
Writes go to `<root>/tmp` and are renamed into place: a reader never sees half an object.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from git_theta.errors import CorruptObjectError, MissingObjectError, StoreError
from git_theta.metadata import ObjectRef
from git_theta.store.serialize import read_object
from git_theta.tensor import BufferPool, RawTensor

__all__ = ["ObjectStore"]

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
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / "objects"
        self.tmp_dir = self.root / "tmp"
        self._objects_str = str(self.objects_dir)
        self._tmp_str = str(self.tmp_dir)
        self._created: list[Path] | None = None  # objects first written in `discard_on_error`
        self._lock = threading.Lock()

    @contextmanager
    def discard_on_error(self) -> Iterator[None]:
        """Objects first stored inside the block are deleted again if it raises, so a clean
        that fails half-way (a truncated checkpoint) leaves the store as it was. Objects that
        were present before are never touched. Not reentrant."""
        self._created = []
        try:
            yield
        except BaseException:
            for path in self._created:
                path.unlink(missing_ok=True)
            raise
        finally:
            self._created = None

    def path(self, oid: str) -> Path:
        return self.objects_dir / oid[0:2] / oid[2:4] / oid

    def has(self, ref: ObjectRef) -> bool:
        try:
            return self.path(ref.oid).stat().st_size == ref.size
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
        fd, tmp = self._create_tmp()
        placed = False
        try:
            digest = hashlib.sha256()
            size = 0
            small = bytearray()  # small chunks (an object header, planes of a tiny tensor)
            try:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    if len(chunk) < _COALESCE_BYTES:
                        small += chunk
                        if len(small) >= _COALESCE_BYTES:
                            _write_all(fd, small)
                            small = bytearray()
                        continue
                    if small:
                        _write_all(fd, small)
                        small = bytearray()
                    _write_all(fd, chunk)
                if small:
                    _write_all(fd, small)
            finally:
                os.close(fd)
            ref = ObjectRef(digest.hexdigest(), size)
            if expected is not None and ref != expected:
                raise CorruptObjectError(
                    f"bytes received for object {expected.oid} do not match it; nothing was stored"
                )
            # Our own hexdigest, so the path needs no check; built as a string because pathlib
            # costs more than the syscalls here.
            target = os.path.join(self._objects_str, ref.oid[0:2], ref.oid[2:4], ref.oid)
            try:
                existing = os.stat(target).st_size
            except FileNotFoundError:
                _rename_into(tmp, target)
                placed = True
                with self._lock:
                    if self._created is not None:
                        self._created.append(Path(target))
                return ref
            if existing != size:
                raise StoreError(
                    f"object {ref.oid} in {self.objects_dir} has the wrong size; "
                    "delete it and run the command again"
                )
            return ref
        finally:
            if not placed:
                with suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _create_tmp(self) -> tuple[int, str]:
        """A new, empty temp file in `tmp_dir` (made if absent), open for writing."""
        while True:
            name = os.path.join(self._tmp_str, f"object-{_TMP_TOKEN}-{next(_tmp_counter)}")
            try:
                return os.open(name, _TMP_FLAGS, 0o600), name
            except FileExistsError:  # left by an earlier process with our pid: next name
                continue
            except FileNotFoundError:
                self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def get(self, ref: ObjectRef) -> bytes:
        """The bytes of an object, verified against its oid.

        Raises:
            MissingObjectError: the object is not in the store.
            CorruptObjectError: its bytes do not hash to its oid.
        """
        try:
            blob = self.path(ref.oid).read_bytes()
        except FileNotFoundError:
            raise MissingObjectError(f"object {ref.oid} is missing", [ref.oid]) from None
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
        """`load_tensor`, and the content hash of the tensor (computed as it decoded)."""
        try:
            f = self.path(ref.oid).open("rb")
        except FileNotFoundError:
            raise MissingObjectError(f"object {ref.oid} is missing", [ref.oid]) from None
        with f:
            try:
                if os.fstat(f.fileno()).st_size != ref.size:
                    raise CorruptObjectError("its size does not match its reference")
                decoded = read_object(f, buffers=buffers, hash_all=False)
            except CorruptObjectError as exc:
                raise CorruptObjectError(f"object {ref.oid} is corrupt ({exc})") from None
        if decoded.size != ref.size or decoded.sha256 not in (None, ref.oid):
            raise CorruptObjectError(
                f"object {ref.oid} is corrupt (its bytes do not match its oid)"
            )
        return decoded.tensor, decoded.content_hash

    def missing(self, refs: list[ObjectRef]) -> list[ObjectRef]:
        """The refs whose objects are not present (by name and size)."""
        return [ref for ref in refs if not self.has(ref)]
