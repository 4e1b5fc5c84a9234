"""NumPy `.npz` archives: a zip of `.npy` members, read without ever unpickling.

Member `name.npy` is parameter `name`. The layout is a small canonical JSON document with the
member order and whether each member was deflated (`np.savez_compressed`) or stored
(`np.savez`), so join writes the same kind of archive. Join writes the zip itself with a fixed
timestamp, so the same tensors always give the same bytes.
Spec: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from git_theta.errors import CheckpointError
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec
from git_theta.tensor import BufferPool, RawTensor

__all__ = ["LAYOUT_VERSION", "NpzFormat"]

LAYOUT_VERSION = 1
_SUFFIX = ".npy"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
# Zip cannot date a file before 1980; one fixed date makes the archive depend on content alone.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_MEMBER_MODE = 0o644 << 16  # unix permission bits live in the high half of external_attr


class _Member(NamedTuple):
    name: str
    compressed: bool


class NpzFormat(Format):
    name = "npz"
    streams = False

    def sniff(self, head: bytes, file: BinaryIO | None) -> bool:
        if file is None or not head.startswith(_ZIP_MAGICS):
            return False
        position = file.tell()
        try:
            with zipfile.ZipFile(file) as archive:
                return all(n.endswith(_SUFFIX) for n in archive.namelist())
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return False
        finally:
            file.seek(position)

    def split(self, stream: BinaryIO, *, source: str, buffers: BufferPool | None = None) -> Split:
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(f"{source}: not a readable npz archive: {exc}") from None
        infos = archive.infolist()
        members: list[_Member] = []
        seen: set[str] = set()
        for info in infos:
            if not info.filename.endswith(_SUFFIX):
                raise CheckpointError(f"{source}: member {info.filename!r} is not a .npy array")
            name = info.filename[: -len(_SUFFIX)]
            if name in seen:
                raise CheckpointError(f"{source}: member {info.filename!r} appears twice")
            seen.add(name)
            members.append(_Member(name, info.compress_type != zipfile.ZIP_STORED))
        return Split(_encode_layout(members), _read_members(archive, infos, source))

    def canonical_layout(self, specs: Mapping[str, TensorSpec]) -> bytes | None:
        return _encode_layout(_fresh_members(specs))

    def join(
        self,
        out: BinaryIO,
        layout: bytes | None,
        specs: Mapping[str, TensorSpec],
        tensors: TensorSource,
        *,
        source: str,
    ) -> None:
        if layout is None:
            members = _fresh_members(specs)
        else:
            members = _decode_layout(layout, source=source)
        if {m.name for m in members} != specs.keys():
            raise CheckpointError(f"{source}: the stored npz layout does not match its parameters")
        if out.seekable():
            _write_archive(out, members, specs, tensors, source)
            return
        # Zip writers mark sizes differently on pipes; spool so the bytes never depend on `out`.
        with tempfile.TemporaryFile() as spool:
            _write_archive(spool, members, specs, tensors, source)
            spool.seek(0)
            shutil.copyfileobj(spool, out)


def _read_members(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], source: str
) -> Iterator[tuple[str, RawTensor]]:
    with archive:
        for info in infos:
            where = f"{source}: member {info.filename!r}"
            try:
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise CheckpointError(
                        f"{where} holds Python objects, which need unpickling; refusing to load it"
                    ) from None
                raise CheckpointError(f"{where} is not a valid .npy array: {exc}") from None
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
                raise CheckpointError(f"{where} is corrupt or truncated: {exc}") from None
            name = info.filename[: -len(_SUFFIX)]
            try:
                tensor = RawTensor.from_numpy(array)
            except ValueError:
                raise CheckpointError(
                    f"{source}: parameter {name!r}: unsupported dtype {array.dtype}"
                ) from None
            yield name, tensor


def _write_archive(
    out: BinaryIO,
    members: list[_Member],
    specs: Mapping[str, TensorSpec],
    tensors: TensorSource,
    source: str,
) -> None:
    stream = tensors([m.name for m in members])
    with zipfile.ZipFile(out, "w") as archive:
        for member in members:
            raw = next(stream, None)
            where = f"{source}: parameter {member.name!r}"
            if raw is None:
                raise CheckpointError(f"{where} was not supplied")
            spec = specs[member.name]
            if (raw.dtype, tuple(raw.shape)) != (spec.dtype, tuple(spec.shape)):
                raise CheckpointError(
                    f"{where}: got {raw.dtype} {list(raw.shape)}, "
                    f"expected {spec.dtype} {list(spec.shape)}"
                )
            try:
                array = raw.to_numpy()
            except ValueError:
                raise CheckpointError(
                    f"{where}: numpy has no {raw.dtype} dtype, so npz cannot hold it; "
                    "save as safetensors instead"
                ) from None
            info = zipfile.ZipInfo(member.name + _SUFFIX, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED if member.compressed else zipfile.ZIP_STORED
            info.external_attr = _MEMBER_MODE
            # As np.savez does: the .npy size is not known up front, and zip64 lifts the 4 GB cap.
            with archive.open(info, "w", force_zip64=True) as fp:
                np.lib.format.write_array(fp, array, allow_pickle=False)


def _fresh_members(specs: Mapping[str, TensorSpec]) -> list[_Member]:
    return [_Member(name, False) for name in sorted(specs)]


def _encode_layout(members: list[_Member]) -> bytes:
    document = {
        "members": [{"compressed": m.compressed, "name": m.name} for m in members],
        "version": LAYOUT_VERSION,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _decode_layout(layout: bytes, *, source: str) -> list[_Member]:
    malformed = CheckpointError(f"{source}: the stored npz layout is malformed")
    try:
        document: Any = json.loads(layout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise malformed from None
    if not isinstance(document, dict) or not isinstance(document.get("members"), list):
        raise malformed
    if document.get("version") != LAYOUT_VERSION:
        raise CheckpointError(
            f"{source}: npz layout version {document.get('version')!r} is not one this "
            f"git-theta reads ({LAYOUT_VERSION}); upgrade git-theta"
        )
    members = []
    for entry in document["members"]:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("compressed"), bool)
        ):
            raise malformed
        members.append(_Member(entry["name"], entry["compressed"]))
    if len({m.name for m in members}) != len(members):
        raise malformed
    return members
