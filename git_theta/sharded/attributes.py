"""The `.gitattributes` line that routes shard indexes to their merge driver:
`*.safetensors.index.json filter=theta-index merge=theta-index`. An index is JSON text, not a
checkpoint: git stores it as it is; its filter only checks it against the shards at `git add`,
and merges go through its own driver."""

from __future__ import annotations

from pathlib import Path

from git_theta.git.attributes import quote_pattern

__all__ = ["INDEX_ATTRIBUTES", "add_index_patterns", "is_index_pattern"]

INDEX_ATTRIBUTES = "filter=theta-index merge=theta-index"


def is_index_pattern(pattern: str) -> bool:
    """Whether `git theta track PATTERN` means shard indexes (`*.safetensors.index.json`)."""
    return pattern.endswith(".index.json")


def add_index_patterns(attributes_file: Path, patterns: list[str]) -> list[str]:
    """Append `PATTERN merge=theta-index` for each pattern without that line; returns those
    added."""
    text = attributes_file.read_text(encoding="utf-8") if attributes_file.exists() else ""
    present = {line.strip() for line in text.splitlines()}
    added = [
        p
        for p in dict.fromkeys(patterns)
        if f"{quote_pattern(p)} {INDEX_ATTRIBUTES}" not in present
    ]
    if not added:
        return []
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{quote_pattern(p)} {INDEX_ATTRIBUTES}\n" for p in added)
    attributes_file.write_text(text, encoding="utf-8")
    return added
