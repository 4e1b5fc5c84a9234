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
from git_theta.tensor import KNOWN_DTYPES, dtype_nbytes

__all__ = [
    "METADATA_VERSION",
    "Metadata",
    "ObjectRef",
    "ParamEntry",
    "decode",
    "encode",
    "looks_like_metadata",
    "update_refs",
]

METADATA_VERSION = 1
# Every metadata file begins with these bytes; checked before any parse (as LFS pointers are).
MAGIC = b'{\n  "git_theta": '
# A checkpoint small enough to be mistaken for metadata is harmless: the full parse decides.
MAX_METADATA_BYTES = 256 * 1024 * 1024

_OID = re.compile(r"^[0-9a-f]{64}$")
_HASH = re.compile(r"^xxh3_128:[0-9a-f]{32}$")


@dataclass(frozen=True, order=True)
class ObjectRef:
    """An object in the store: the sha256 of its bytes and its size in bytes."""

    oid: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"oid": self.oid, "size": self.size}


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
        """Every object this entry needs to be rebuilt, base first."""
        refs = [self.object]
        for update in self.updates:
            refs.extend(update_refs(update))
        return refs


def update_refs(record: Mapping[str, Any]) -> list[ObjectRef]:
    """The object references of one update record, in key order."""
    return [
        ObjectRef(value["oid"], value["size"])
        for _, value in sorted(record.items())
        if isinstance(value, dict) and set(value) == {"oid", "size"}
    ]


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


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def encode(metadata: Metadata) -> bytes:
    """The canonical bytes of `metadata` (golden-tested; see docs/metadata-spec.md)."""
    lines = [
        "{",
        f'  "git_theta": {METADATA_VERSION},',
        f'  "format": {_dumps(metadata.format)},',
        f'  "layout": {_dumps(metadata.layout.to_json() if metadata.layout else None)},',
    ]
    names = sorted(metadata.params)
    if not names:
        lines.append('  "params": {}')
    else:
        lines.append('  "params": {')
        for i, name in enumerate(names):
            comma = "," if i < len(names) - 1 else ""
            lines.append(f"    {_dumps(name)}: {_dumps(metadata.params[name].to_json())}{comma}")
        lines.append("  }")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def looks_like_metadata(head: bytes) -> bool:
    """Cheap check on the first bytes of a blob (at least len(MAGIC) of them if it has them)."""
    return head.startswith(MAGIC)


def decode(data: bytes, *, source: str = "<metadata>") -> Metadata:
    """Parse metadata bytes of any supported version.

    Raises:
        NotMetadataError: the bytes are not git-theta metadata at all.
        MetadataError: they claim to be (start with the magic) but are malformed.
    """
    if len(data) < len(MAGIC) or not data.startswith(MAGIC):
        raise NotMetadataError(f"{source}: not git-theta metadata")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"{source}: malformed git-theta metadata: {exc}") from None
    try:
        return _from_json(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise MetadataError(f"{source}: malformed git-theta metadata: {exc}") from None


def _from_json(doc: Any) -> Metadata:
    version = doc["git_theta"]
    if version != METADATA_VERSION:
        raise ValueError(
            f"metadata version {version!r} is not supported by this git-theta "
            f"(reads version {METADATA_VERSION}); upgrade git-theta"
        )
    fmt = doc["format"]
    if not isinstance(fmt, str):
        raise TypeError("format must be a string")
    layout = _entry(doc["layout"], "layout") if doc["layout"] is not None else None
    params_doc = doc["params"]
    if not isinstance(params_doc, dict):
        raise TypeError("params must be an object")
    params = {str(name): _entry(value, name) for name, value in params_doc.items()}
    return Metadata(format=fmt, layout=layout, params=params)


def _entry(value: Any, name: str) -> ParamEntry:
    dtype = value["dtype"]
    if dtype not in KNOWN_DTYPES:
        raise ValueError(f"parameter {name!r}: unknown dtype {dtype!r}")
    shape = value["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"parameter {name!r}: shape must be a list of non-negative integers")
    try:
        dtype_nbytes(dtype, shape)
    except ValueError as exc:
        raise ValueError(f"parameter {name!r}: {exc}") from None
    if not _HASH.match(value["hash"]):
        raise ValueError(f"parameter {name!r}: bad hash {value['hash']!r}")
    obj = value["object"]
    if not _OID.match(obj["oid"]) or not isinstance(obj["size"], int) or obj["size"] < 0:
        raise ValueError(f"parameter {name!r}: bad object reference")
    updates = value.get("updates", [])
    if not isinstance(updates, list) or not all(
        isinstance(u, dict) and isinstance(u.get("type"), str) for u in updates
    ):
        raise ValueError(f"parameter {name!r}: updates must be a list of typed objects")
    for update in updates:
        for ref in update_refs(update):
            if not _OID.match(ref.oid) or not isinstance(ref.size, int) or ref.size < 0:
                raise ValueError(f"parameter {name!r}: bad object reference in an update")
    return ParamEntry(
        dtype=dtype,
        shape=tuple(shape),
        hash=value["hash"],
        object=ObjectRef(obj["oid"], obj["size"]),
        updates=tuple(updates),
    )
