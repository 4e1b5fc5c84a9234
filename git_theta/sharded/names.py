"""Which files are shards of one checkpoint: by the name transformers gives them,
`PREFIX-0000k-of-0000n.EXT`, in one folder."""

from __future__ import annotations

import re

__all__ = ["shard_group"]

_SHARD = re.compile(r"^(?P<dir>(?:.*/)?)(?P<prefix>[^/]+)-\d{5}-of-\d{5}(?P<ext>\.[^/]+)$")


def shard_group(path: str) -> str | None:
    """The name a shard's model is reported under (`model-*-of-*.safetensors`), or None."""
    m = _SHARD.match(path)
    return f"{m['dir']}{m['prefix']}-*-of-*{m['ext']}" if m else None
