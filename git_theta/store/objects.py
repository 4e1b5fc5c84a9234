"""Objects on disk: `<root>/objects/ab/cd/<sha256>` (the root: git_theta/store/location.py).

An object is named by the sha256 of its bytes, so Git LFS servers accept it as-is.
Writes go to `<root>/tmp` and are renamed into place: a reader never sees half an object.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from git_theta.errors import (
    CorruptObjectError,
    MissingObjectError,
    ObjectTooLargeError,
    StoreError,
)
from git_theta.limits import DEFAULT_MAX_OBJECT_BYTES
from git_theta.metadata import ObjectRef, is_oid
from git_theta.store.serialize import read_object
from git_theta.tensor import BufferPool, RawTensor

__all__ = ["ObjectStore"]


class ObjectStore:
    """The objects under one store directory (normally `.git/theta`).

    Args:
        root: the store directory; `objects/` and `tmp/` are created inside on first write.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / "objects"
        self.tmp_dir = self.root / "tmp"
        self._created: list[Path] | None = None  # objects first written in `discard_on_error`
        self._lock = threading.Lock()
        # The largest tensor an object may declare (`theta.maxObjectBytes`; location.py).
        self.max_object_bytes = DEFAULT_MAX_OBJECT_BYTES

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
        """Where object `oid` lives. Only a sha256 (64 lowercase hex digits) is ever turned into
        a path: anything else, whatever code path it came by, is refused.

        Raises:
            StoreError: `oid` is not an object id.
        """
        if not is_oid(oid):
            raise StoreError(f"refusing object id {repr(oid)[:80]}: not 64 lowercase hex digits")
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
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix="object-")
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
            ref = ObjectRef(digest.hexdigest(), size)
            if expected is not None and ref != expected:
                raise CorruptObjectError(
                    f"bytes received for object {expected.oid} do not match it; nothing was stored"
                )
            target = self.path(ref.oid)
            try:
                existing = target.stat().st_size
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
                with self._lock:
                    if self._created is not None:
                        self._created.append(target)
                return ref
            if existing != size:
                raise StoreError(
                    f"object {ref.oid} in {self.objects_dir} has the wrong size; "
                    "delete it and run the command again"
                )
            return ref
        finally:
            Path(tmp).unlink(missing_ok=True)

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
                decoded = read_object(
                    f, buffers=buffers, hash_all=False, max_bytes=self.max_object_bytes
                )
            except CorruptObjectError as exc:
                raise CorruptObjectError(f"object {ref.oid} is corrupt ({exc})") from None
            except ObjectTooLargeError as exc:
                raise ObjectTooLargeError(f"object {ref.oid} {exc}") from None
        if decoded.size != ref.size or decoded.sha256 not in (None, ref.oid):
            raise CorruptObjectError(
                f"object {ref.oid} is corrupt (its bytes do not match its oid)"
            )
        return decoded.tensor, decoded.content_hash

    def missing(self, refs: list[ObjectRef]) -> list[ObjectRef]:
        """The refs whose objects are not present (by name and size)."""
        return [ref for ref in refs if not self.has(ref)]
