"""The shard index file (`model.safetensors.index.json`), parsed with bounds.

Document: `{"metadata": {"total_size": N, ...}, "weight_map": {param: shard file name}}`, as
transformers' `save_pretrained` writes it. Shard names come from a repository, so they are
checked to be plain file names in the index's own directory before any becomes a path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from git_theta.errors import CheckpointError
from git_theta.limits import check_json_depth

__all__ = ["INDEX_SUFFIX", "MAX_INDEX_BYTES", "ShardIndex", "is_index_path", "parse_index"]

INDEX_SUFFIX = ".safetensors.index.json"
# A weight map of a 100k-tensor model is a few MB; the same bound as a safetensors header.
MAX_INDEX_BYTES = 100_000_000


def is_index_path(path: str) -> bool:
    """Whether `path` names a shard index by its file name."""
    return path.endswith(INDEX_SUFFIX)


@dataclass(frozen=True)
class ShardIndex:
    """A parsed index.

    Attributes:
        path: the index file, repository-relative, for messages.
        weight_map: parameter -> shard file name (in the index's directory).
        total_size: `metadata.total_size`, or None when the index has none.
        document: the whole JSON document, so a merge can keep what it does not touch.
    """

    path: str
    weight_map: dict[str, str]
    total_size: int | None
    document: dict[str, Any]

    @property
    def shards(self) -> list[str]:
        """The shard file names, in first-mention order."""
        return list(dict.fromkeys(self.weight_map.values()))

    def shard_path(self, shard: str) -> str:
        """The shard's repository-relative path (next to the index)."""
        folder = self.path.rpartition("/")[0]
        return f"{folder}/{shard}" if folder else shard


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def parse_index(data: bytes, *, path: str) -> ShardIndex:
    """Parse an index file's bytes.

    Raises:
        CheckpointError: one line naming `path`: too large, not JSON, or not an index
            (no `weight_map` of names to shard file names, a shard outside the folder, a
            `total_size` that is not a non-negative integer).
    """
    if len(data) > MAX_INDEX_BYTES:
        raise CheckpointError(f"{path}: {len(data)} bytes, more than a shard index may hold")
    try:
        check_json_depth(data)
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not a valid JSON shard index: {exc}") from None
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{path}: no weight_map of parameter names to shard file names")
    for name, shard in weight_map.items():
        if not _plain_name(shard):
            raise CheckpointError(
                f"{path}: parameter {name!r} names shard {shard!r}, which is not a file name "
                "next to the index"
            )
    meta = document.get("metadata")
    total = meta.get("total_size") if isinstance(meta, dict) else None
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise CheckpointError(f"{path}: metadata.total_size {total!r} is not a byte count")
    return ShardIndex(path, dict(weight_map), total, document)
