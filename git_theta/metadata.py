"""The metadata file Git stores in place of a checkpoint (spec: docs/metadata-spec.md).

One canonical encoding: fixed top-level key order, one parameter per line sorted by name, each
entry JSON with sorted keys. One line per parameter keeps `git diff` and a textual merge of the
file meaningful even without git-theta's own drivers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from git_theta.errors import MetadataError, NotMetadataError
from git_theta.gc_pause import gc_paused
from git_theta.limits import check_json_depth, checked_nbytes, has_lone_surrogate_escape
from git_theta.tensor import KNOWN_DTYPES, dtype_nbytes

__all__ = [
    "METADATA_VERSION",
    "Metadata",
    "ObjectRef",
    "ParamEntry",
    "decode",
    "encode",
    "is_oid",
    "looks_like_metadata",
    "update_refs",
]

METADATA_VERSION = 1
# Every metadata file begins with these bytes; checked before any parse (as LFS pointers are).
MAGIC = b'{\n  "git_theta": '
# A checkpoint small enough to be mistaken for metadata is harmless: the full parse decides.
MAX_METADATA_BYTES = 256 * 1024 * 1024

_OID = re.compile(r"[0-9a-f]{64}")
_HASH = re.compile(r"xxh3_128:[0-9a-f]{32}")
# An object's size in bytes: far beyond any tensor, and exact in every JSON reader (< 2**53).
MAX_OBJECT_SIZE = 1 << 50


def is_oid(value: object) -> bool:
    """Whether `value` is an object id: exactly 64 lowercase hex digits (a sha256), nothing
    else. Only such strings ever become a path in the store."""
    return type(value) is str and _OID.fullmatch(value) is not None


@dataclass(frozen=True, order=True)
class ObjectRef:
    """An object in the store: the sha256 of its bytes and its size; for a tensor packed with
    others (docs/metadata-spec.md, "Packs"), its own object is `length` bytes from `offset`.

    Checked where it is made (the one validation point for object references): the oid is
    exactly 64 lowercase hex digits, the size a non-negative int (not a bool) of at most
    MAX_OBJECT_SIZE, a member's range within the object. References read from metadata come
    through `parse`, which says where a bad one was.

    Raises:
        ValueError: a malformed oid, size or member range.
    """

    oid: str
    size: int
    offset: int | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        # `type(...) is int` keeps bools out; the common case costs two checks.
        size = self.size
        if not (is_oid(self.oid) and type(size) is int and 0 <= size <= MAX_OBJECT_SIZE):
            raise ValueError(" ".join(_ref_problem(self.oid, size) or ("", "")))
        if (self.offset, self.length) != (None, None):
            problem = _member_problem(self.offset, self.length, size)
            if problem is not None:
                raise ValueError(" ".join(problem))

    @property
    def whole(self) -> ObjectRef:
        """The object itself (a pack, for a member): what is stored, sent and fetched."""
        return self if self.offset is None else ObjectRef(self.oid, self.size)

    @property
    def stored(self) -> int:
        """Bytes stored for this reference: its member's, else the whole object's."""
        return self.size if self.length is None else self.length

    @classmethod
    def parse(cls, value: object, *, where: str) -> ObjectRef:
        """The reference a JSON value holds: exactly `{"oid": <64 hex>, "size": <int>}`, or
        with `"offset"` and `"length"` too for a pack member.

        Args:
            where: what holds the value, for the message (`updates[0].vector`).
        Raises:
            MetadataError: anything else; the message names `where` and the field.
        """
        if type(value) is dict and len(value) in (2, 4):
            oid, size = value.get("oid"), value.get("size")
            if is_oid(oid) and type(size) is int and 0 <= size <= MAX_OBJECT_SIZE:
                if len(value) == 2:
                    return cls(oid, size)  # type: ignore[arg-type]
                at, length = value.get("offset"), value.get("length")
                if _member_problem(at, length, size) is None:
                    return cls(oid, size, at, length)  # type: ignore[arg-type]
        if not isinstance(value, dict):
            raise MetadataError(f"{where} is not an object reference ({_shown(value)})")
        if value.keys() not in (_REF_KEYS, _MEMBER_KEYS):
            extra = sorted(str(k) for k in value.keys() - _MEMBER_KEYS)
            need = 'it needs "oid" and "size" (and "offset" with "length" for a member)'
            raise MetadataError(
                f"{where} is not an object reference: "
                + (f"unexpected key(s) {extra}" if extra else need)
            )
        problem = _ref_problem(value["oid"], value["size"])
        if problem is None and len(value) == len(_MEMBER_KEYS):
            problem = _member_problem(value["offset"], value["length"], value["size"])
            if problem is None:
                return cls(value["oid"], value["size"], value["offset"], value["length"])
        if problem is not None:
            raise MetadataError(f"{where}.{problem[0]}: {problem[1]}")
        return cls(value["oid"], value["size"])

    def to_json(self) -> dict[str, Any]:
        if self.offset is None:
            return {"oid": self.oid, "size": self.size}
        return {"length": self.length, "offset": self.offset, "oid": self.oid, "size": self.size}


_REF_KEYS, _MEMBER_KEYS = frozenset({"oid", "size"}), frozenset({"oid", "size", "offset", "length"})


def _member_problem(offset: object, length: object, size: int) -> tuple[str, str] | None:
    """(field, what is wrong with it) for a member range that is not whole bytes inside an
    object of `size` bytes, else None."""
    if type(offset) is not int or not 0 <= offset <= size:
        return "offset", f"{_shown(offset)} is not a byte offset within the object ({size} bytes)"
    if type(length) is not int or not 0 < length <= size - offset:
        return "length", f"{_shown(length)} does not fit in the object after offset {offset}"
    return None


def _ref_problem(oid: object, size: object) -> tuple[str, str] | None:
    """(field, what is wrong with it) for a malformed reference, else None."""
    if not is_oid(oid):
        return "oid", f"{_shown(oid)} is not 64 lowercase hex digits"
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_OBJECT_SIZE:
        return "size", f"{_shown(size)} is not a byte count (0 to {MAX_OBJECT_SIZE})"
    return None


def _shown(value: object, width: int = 80) -> str:  # one readable line whatever a file holds
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True)
class ParamEntry:
    """One parameter group: what it is and how to rebuild its raw bytes.

    Attributes:
        dtype: safetensors dtype name.
        shape: dimensions.
        hash: content hash of the raw tensor bytes (`xxh3_128:<hex>`).
        object: the dense object the tensor starts from.
        updates: the chain applied on top of `object`, oldest first (low-rank, IA3, sparse;
            see git_theta/updates/). Each is a JSON object with a `type`; object references
            inside it are `{"oid", "size"}` objects.
    """

    dtype: str
    shape: tuple[int, ...]
    hash: str
    object: ObjectRef
    updates: tuple[Mapping[str, Any], ...] = ()

    @property
    def nbytes(self) -> int:
        """Size of the rebuilt tensor's raw bytes."""
        return dtype_nbytes(self.dtype, self.shape)

    @property
    def update_type(self) -> str:
        return str(self.updates[-1]["type"]) if self.updates else "dense"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dtype": self.dtype,
            "hash": self.hash,
            "object": self.object.to_json(),
            "shape": list(self.shape),
        }
        if self.updates:
            out["updates"] = [dict(u) for u in self.updates]
        return out

    def objects(self) -> list[ObjectRef]:
        """Every object this entry needs to be rebuilt, base first: whole objects (a pack
        for a packed tensor), as the store holds and transfers them."""
        return [self.object.whole, *(r.whole for u in self.updates for r in update_refs(u))]

    @property
    def stored_bytes(self) -> int:
        """Bytes stored for this entry: its objects, only its own member of a pack."""
        refs = [self.object, *(r for u in self.updates for r in update_refs(u))]
        return sum(ref.stored for ref in refs)


def update_refs(record: Mapping[str, Any], *, where: str = "update") -> list[ObjectRef]:
    """The object references of one update record, in key order.

    Every JSON object inside a record (a value of it, or inside a list, at any depth) is an
    object reference, so a plugin's references are checked like the built-in ones and no
    object hides from transfer, fsck or prune.

    Args:
        where: how messages name the record (`updates[0]`).
    Raises:
        MetadataError: a JSON object in the record is not a valid reference; the message
            names the field (`updates[0].vector.oid`).
    """
    refs: list[ObjectRef] = []
    for key, value in sorted(record.items()):
        _collect_refs(value, f"{where}.{key}", refs)
    return refs


def _collect_refs(value: Any, where: str, out: list[ObjectRef]) -> None:
    if isinstance(value, dict):
        out.append(ObjectRef.parse(value, where=where))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _collect_refs(item, f"{where}[{i}]", out)


@dataclass(frozen=True)
class Metadata:
    """A tracked checkpoint as Git stores it.

    Attributes:
        format: name of the checkpoint format (a key of the formats registry).
        layout: the format's own structure (a safetensors header, a pickle skeleton) as a byte
            tensor, so the file can be rebuilt exactly; None when the format needs none.
        params: parameter name -> entry. Names are data, never paths.
    """

    format: str
    layout: ParamEntry | None
    params: Mapping[str, ParamEntry] = field(default_factory=dict)

    def objects(self) -> list[ObjectRef]:
        """Every object needed to rebuild the checkpoint, layout first, without repeats."""
        seen: dict[str, ObjectRef] = {}
        entries = ([self.layout] if self.layout else []) + [self.params[n] for n in self.params]
        for entry in entries:
            for ref in entry.objects():
                seen.setdefault(ref.oid, ref)
        return list(seen.values())


# One encoder for every value: `json.dumps` with options builds a new one per call.
_dumps = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(", ", ": ")).encode


def _entry_text(entry: ParamEntry) -> str:
    """`_dumps(entry.to_json())`, written directly for a dense entry whose fields are known
    ASCII text and ints (a first add of 20,000 tensors spent ~0.3 s building and encoding
    dicts); tests/unit/test_metadata.py compares the two."""
    if entry.updates or entry.dtype not in KNOWN_DTYPES or not _HASH.fullmatch(entry.hash):
        return _dumps(entry.to_json())
    ref = entry.object
    member = "" if ref.offset is None else f'"length": {ref.length}, "offset": {ref.offset}, '
    return (
        f'{{"dtype": "{entry.dtype}", "hash": "{entry.hash}", "object": {{{member}'
        f'"oid": "{ref.oid}", "size": {ref.size}}}, "shape": [{", ".join(map(str, entry.shape))}]}}'
    )


def encode(metadata: Metadata) -> bytes:
    """The canonical bytes of `metadata` (golden-tested; see docs/metadata-spec.md)."""
    lines = [
        "{",
        f'  "git_theta": {METADATA_VERSION},',
        f'  "format": {_dumps(metadata.format)},',
        f'  "layout": {_entry_text(metadata.layout) if metadata.layout else "null"},',
    ]
    names = sorted(metadata.params)
    if not names:
        lines.append('  "params": {}')
    else:
        lines.append('  "params": {')
        for i, name in enumerate(names):
            comma = "," if i < len(names) - 1 else ""
            lines.append(f"    {_dumps(name)}: {_entry_text(metadata.params[name])}{comma}")
        lines.append("  }")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def looks_like_metadata(head: bytes) -> bool:
    """Cheap check on the first bytes of a blob (at least len(MAGIC) of them, if it has)."""
    return head.startswith(MAGIC)


def decode(data: bytes, *, source: str = "<metadata>") -> Metadata:
    """Parse metadata bytes of any supported version, validating every field: each object
    reference through `ObjectRef.parse`, each shape through `limits.checked_nbytes`. Size and
    nesting are bounded before the JSON decoder runs.

    Raises:
        NotMetadataError: the bytes are not git-theta metadata at all.
        MetadataError: they claim to be (start with the magic) but are malformed; one line
            naming `source`, the parameter and the field.
    """
    if len(data) < len(MAGIC) or not data.startswith(MAGIC):
        raise NotMetadataError(f"{source}: not git-theta metadata")
    try:
        if len(data) > MAX_METADATA_BYTES:
            raise ValueError(f"{len(data)} bytes (at most {MAX_METADATA_BYTES})")
        check_json_depth(data)
        with gc_paused():  # everything built here is acyclic
            doc = json.loads(data.decode("utf-8"))
            if has_lone_surrogate_escape(data):
                json.dumps(doc, ensure_ascii=False).encode("utf-8")
            return _from_json(doc)
    except UnicodeError:
        raise MetadataError(
            f"{source}: malformed git-theta metadata: not valid UTF-8 (or a lone surrogate)"
        ) from None
    except RecursionError:  # pre-scanned; kept so no parser error escapes as a crash
        raise MetadataError(f"{source}: malformed git-theta metadata: nested too deeply") from None
    except (KeyError, TypeError, ValueError, MetadataError) as exc:
        detail = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise MetadataError(f"{source}: malformed git-theta metadata: {detail}") from None


def _from_json(doc: Any) -> Metadata:
    if not isinstance(doc, dict):
        raise TypeError("not a JSON object")
    version = doc["git_theta"]
    if version != METADATA_VERSION:
        raise ValueError(
            f"metadata version {_shown(version)} is not supported by this git-theta "
            f"(reads version {METADATA_VERSION}); upgrade git-theta"
        )
    fmt = doc["format"]
    if not isinstance(fmt, str):
        raise TypeError("format must be a string")
    layout = _entry(doc["layout"], "layout") if doc["layout"] is not None else None
    params_doc = doc["params"]
    if not isinstance(params_doc, dict):
        raise TypeError("params must be an object")
    params = {
        name: _entry(value, f"parameter {_shown(name)}") for name, value in params_doc.items()
    }
    return Metadata(format=fmt, layout=layout, params=params)


def _entry(value: Any, what: str) -> ParamEntry:
    if not isinstance(value, dict):
        raise TypeError(f"{what}: the entry is not a JSON object")
    missing = sorted({"dtype", "hash", "object", "shape"} - value.keys())
    if missing:
        raise ValueError(f"{what}: no {', '.join(missing)}")
    dtype, shape, digest = value["dtype"], value["shape"], value["hash"]
    if not isinstance(dtype, str) or dtype not in KNOWN_DTYPES:
        raise ValueError(f"{what}: unknown dtype {_shown(dtype)}")
    try:
        checked_nbytes(dtype, shape)
    except ValueError as exc:
        raise ValueError(f"{what}: shape: {exc}") from None
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise ValueError(f"{what}: bad hash {_shown(digest)}")
    try:
        obj = ObjectRef.parse(value["object"], where="object")
    except MetadataError as exc:
        raise ValueError(f"{what}: {exc}") from None
    updates = value.get("updates", [])
    if not isinstance(updates, list):
        raise ValueError(f"{what}: updates must be a list of typed objects")
    for i, update in enumerate(updates):
        if not isinstance(update, dict) or not isinstance(update.get("type"), str):
            raise ValueError(f"{what}: updates[{i}] is not an object with a string type")
        try:
            update_refs(update, where=f"updates[{i}]")
        except MetadataError as exc:
            raise ValueError(f"{what}: {exc}") from None
    return ParamEntry(
        dtype=dtype,
        shape=tuple(shape),
        hash=digest,
        object=obj,
        updates=tuple(updates),
    )
