"""NumPy `.npz` archives: a zip of `.npy` members, read without ever unpickling.

Member `name.npy` is parameter `name`; its tensor is stored little-endian and in C order like
every tensor. The layout is a small canonical JSON document with the member order, whether each
member was deflated (`np.savez_compressed`) or stored (`np.savez`), and, only where they differ
from what `np.savez` writes for a little-endian C-order array, the member's `.npy` header (byte
order, Fortran order, header version and padding), its permission bits and its date. Join
writes the zip itself from these, so an archive `np.savez`/`np.savez_compressed` wrote comes
back byte for byte, and the same tensors always give the same bytes.

Members are read by our own bounded reader (formats/npy.py), never by numpy's: a member's
declared shape must match its size in the archive before anything is allocated.
Spec: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from typing import IO, Any, BinaryIO, NamedTuple

import numpy as np

from git_theta.errors import CheckpointError
from git_theta.formats import npy
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec
from git_theta.limits import check_json_depth
from git_theta.tensor import BufferPool, RawTensor, allocate

__all__ = ["LAYOUT_VERSION", "NpzFormat"]

LAYOUT_VERSION = 2
# Layouts without headers, permissions or dates are still written as version 1, so files that
# need none of them keep the metadata they had before those fields existed.
_PLAIN_VERSION = 1
# Deflate's largest expansion: a 258-byte match costs at least 2 bits (RFC 1951), ~1032:1.
_DEFLATE_MAX_RATIO = 1032
# What np.savez gives every member (zipfile's `open(name, "w")`): rw------- and no date.
_SAVEZ_MODE = 0o600 << 16
# Read buffer for member data.
_CHUNK = 1024 * 1024
_SUFFIX = ".npy"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
# Zip cannot date a file before 1980; one fixed date makes the archive depend on content alone.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class _Member(NamedTuple):
    name: str
    compressed: bool
    npy: bytes | None = None  # the .npy header bytes, if not numpy's for a plain array
    attr: int = _SAVEZ_MODE  # zip external_attr (unix permission bits in the high half)
    date: tuple[int, int, int, int, int, int] = _ZIP_EPOCH


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
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, UnicodeError):
            return False
        finally:
            file.seek(position)

    def split(self, stream: BinaryIO, *, source: str, buffers: BufferPool | None = None) -> Split:
        try:
            size = stream.seek(0, 2)
            stream.seek(0)
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, UnicodeError) as exc:
            raise CheckpointError(f"{source}: not a readable npz archive: {exc}") from None
        infos = archive.infolist()
        seen: set[str] = set()
        for info in infos:
            if not info.filename.endswith(_SUFFIX):
                raise CheckpointError(f"{source}: member {info.filename!r} is not a .npy array")
            name = info.filename[: -len(_SUFFIX)]
            if name in seen:
                raise CheckpointError(f"{source}: member {info.filename!r} appears twice")
            seen.add(name)
            _check_sizes(info, size, f"{source}: member {info.filename!r}")
        headers = [_read_npy_header(archive, info, source) for info in infos]
        members = [_member(info, header) for info, header in zip(infos, headers, strict=True)]
        return Split(_encode_layout(members), _read_members(archive, infos, headers, source))

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


def _check_sizes(info: zipfile.ZipInfo, archive_size: int, where: str) -> None:
    """Refuse a member whose sizes could not be true, before any of it is read: its compressed
    bytes must fit in the archive, and expand no more than its compression can."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(
            f"{where} uses zip compression method {info.compress_type} "
            "(npz archives are stored or deflated)"
        )
    if info.header_offset + info.compress_size > archive_size:
        raise CheckpointError(f"{where} declares more bytes than the archive holds")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_MAX_RATIO
    if info.file_size > info.compress_size * ratio + 64:
        raise CheckpointError(
            f"{where} declares {info.file_size} bytes, more than its "
            f"{info.compress_size} compressed bytes can hold"
        )


def _open_error(where: str, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{where} is corrupt or truncated: {exc}")


_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError)


def _read_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> npy.NpyHeader:
    """The member's .npy header, checked against the member's size: the data that follows
    must be exactly what the shape says."""
    where = f"{source}: member {info.filename!r}"
    try:
        with archive.open(info) as member:
            head = member.read(12)
            _, end = npy.split_preamble(head)
            preamble = head + member.read(end - len(head))
        header = npy.parse_preamble(preamble)
    except npy.NpyError as exc:
        if "Python objects" in str(exc):
            raise CheckpointError(
                f"{where} holds Python objects, which need unpickling; refusing to load it"
            ) from None
        if str(exc).startswith("unsupported dtype"):
            name = info.filename[: -len(_SUFFIX)]
            raise CheckpointError(f"{source}: parameter {name!r}: {exc}") from None
        raise CheckpointError(f"{where} is not a valid .npy array: {exc}") from None
    except _READ_ERRORS as exc:
        raise _open_error(where, exc) from None
    if len(preamble) + header.nbytes != info.file_size:
        raise CheckpointError(
            f"{where}: its header declares {header.dtype} {list(header.shape)} "
            f"({header.nbytes} bytes) but the member holds {info.file_size - len(preamble)}"
        )
    return header


def _member(info: zipfile.ZipInfo, header: npy.NpyHeader) -> _Member:
    plain = header.preamble == npy.canonical_preamble(_little(header.descr), header.shape)
    return _Member(
        info.filename[: -len(_SUFFIX)],
        info.compress_type != zipfile.ZIP_STORED,
        None if plain else header.preamble,
        info.external_attr,
        tuple(info.date_time),  # type: ignore[arg-type]
    )


def _little(descr: str) -> str:
    return "<" + descr[1:] if descr.startswith((">", "=")) else descr


def _read_members(
    archive: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    headers: list[npy.NpyHeader],
    source: str,
) -> Iterator[tuple[str, RawTensor]]:
    with archive:
        for info, header in zip(infos, headers, strict=True):
            where = f"{source}: member {info.filename!r}"
            try:
                data = allocate(header.nbytes)
            except (MemoryError, OSError) as exc:
                raise CheckpointError(
                    f"{where} declares {header.nbytes} bytes, more than this machine can "
                    f"allocate ({exc})"
                ) from None
            try:
                with archive.open(info) as member:
                    member.read(len(header.preamble))
                    got = 0
                    while got < header.nbytes:
                        chunk = member.read(min(_CHUNK, header.nbytes - got))
                        if not chunk:
                            raise EOFError(f"the data ends after {got} of {header.nbytes} bytes")
                        data[got : got + len(chunk)] = chunk
                        got += len(chunk)
                    member.read(1)  # to the end: zipfile checks the CRC there
            except _READ_ERRORS as exc:
                raise _open_error(where, exc) from None
            name = info.filename[: -len(_SUFFIX)]
            yield name, _canonical(header, data)


def _canonical(header: npy.NpyHeader, data: memoryview) -> RawTensor:
    """The tensor in git-theta's form: little-endian, C order."""
    if not header.big_endian and (not header.fortran or len(header.shape) < 2):
        return RawTensor(header.dtype, header.shape, data)
    array = np.frombuffer(data, dtype=np.dtype(header.descr))
    return RawTensor.from_numpy(array.reshape(header.shape, order="F" if header.fortran else "C"))


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
            info = zipfile.ZipInfo(member.name + _SUFFIX, date_time=member.date)
            info.compress_type = zipfile.ZIP_DEFLATED if member.compressed else zipfile.ZIP_STORED
            info.external_attr = member.attr
            # As np.savez does: the .npy size is not known up front, and zip64 lifts the 4 GB cap.
            with archive.open(info, "w", force_zip64=True) as fp:
                if member.npy is None:
                    np.lib.format.write_array(fp, array, allow_pickle=False)
                else:
                    _write_as_recorded(fp, member.npy, raw.dtype, array, where)


def _write_as_recorded(
    fp: IO[bytes], preamble: bytes, dtype: str, array: np.ndarray, where: str
) -> None:
    """The member as its recorded header says: that header, then the data in its byte order
    and memory order (a byte swap and a transpose: exact for every dtype)."""
    try:
        header = npy.parse_preamble(preamble)
    except npy.NpyError as exc:
        raise CheckpointError(f"{where}: the stored .npy header is malformed: {exc}") from None
    if (header.dtype, header.shape) != (dtype, tuple(array.shape)):
        raise CheckpointError(f"{where}: the stored .npy header does not match the tensor")
    fp.write(preamble)
    data = array.astype(np.dtype(header.descr), copy=False)
    fp.write(data.tobytes(order="F") if header.fortran else data.tobytes(order="C"))


def _fresh_members(specs: Mapping[str, TensorSpec]) -> list[_Member]:
    return [_Member(name, False) for name in sorted(specs)]


def _encode_layout(members: list[_Member]) -> bytes:
    entries = []
    extended = False
    for m in members:
        entry: dict[str, Any] = {"compressed": m.compressed, "name": m.name}
        if m.npy is not None:
            entry["npy"] = m.npy.decode("latin-1")
        if m.attr != _SAVEZ_MODE:
            entry["attr"] = m.attr
        if m.date != _ZIP_EPOCH:
            entry["date"] = list(m.date)
        extended = extended or len(entry) > 2
        entries.append(entry)
    document = {"members": entries, "version": LAYOUT_VERSION if extended else _PLAIN_VERSION}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _decode_layout(layout: bytes, *, source: str) -> list[_Member]:
    malformed = CheckpointError(f"{source}: the stored npz layout is malformed")
    try:
        check_json_depth(layout)
        document: Any = json.loads(layout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise malformed from None
    if not isinstance(document, dict) or not isinstance(document.get("members"), list):
        raise malformed
    if document.get("version") not in (_PLAIN_VERSION, LAYOUT_VERSION):
        raise CheckpointError(
            f"{source}: npz layout version {document.get('version')!r} is not one this "
            f"git-theta reads ({_PLAIN_VERSION}, {LAYOUT_VERSION}); upgrade git-theta"
        )
    members = []
    for entry in document["members"]:
        member = _member_from_json(entry)
        if member is None:
            raise malformed
        members.append(member)
    if len({m.name for m in members}) != len(members):
        raise malformed
    return members


def _member_from_json(entry: Any) -> _Member | None:
    if not (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("compressed"), bool)
    ):
        return None
    npy_text, attr, date = entry.get("npy"), entry.get("attr", _SAVEZ_MODE), entry.get("date")
    if npy_text is not None and not (isinstance(npy_text, str) and len(npy_text) < 1 << 17):
        return None
    if isinstance(attr, bool) or not isinstance(attr, int) or not 0 <= attr < 1 << 32:
        return None
    if date is not None and not (
        isinstance(date, list)
        and len(date) == 6
        and all(isinstance(v, int) and not isinstance(v, bool) for v in date)
        and 1980 <= date[0] <= 2107
        and all(0 <= v < 100 for v in date[1:])
    ):
        return None
    try:
        preamble = npy_text.encode("latin-1") if npy_text is not None else None
    except UnicodeEncodeError:
        return None
    return _Member(
        entry["name"],
        entry["compressed"],
        preamble,
        attr,
        tuple(date) if date is not None else _ZIP_EPOCH,
    )
