"""Report the shards of one sharded checkpoint as one model: a tensor that `save_pretrained`
moved from one shard to another is *moved* (its bytes unchanged, nothing new stored), not
removed from one file and added to another.

Shards are recognised by the name transformers gives them (`PREFIX-0000k-of-0000n.EXT`, in
one folder); they group when more than one of them changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from git_theta.diffing.records import FileDiff, ParamDiff
from git_theta.sharded.names import shard_group

__all__ = ["group_shards"]


def group_shards(files: Sequence[FileDiff]) -> tuple[FileDiff, ...]:
    """`files` with the shards of each sharded model that changed in more than one shard
    merged into one entry, in the place of its first shard."""
    groups: dict[str, list[FileDiff]] = {}
    for f in files:
        key = shard_group(f.path)
        if key is not None:
            groups.setdefault(key, []).append(f)
    out: list[FileDiff] = []
    done: set[str] = set()
    for f in files:
        key = shard_group(f.path)
        if key is None or len(groups[key]) < 2:
            out.append(f)
        elif key not in done:
            done.add(key)
            out.append(_combine(key, groups[key]))
    return tuple(out)


def _shard_name(path: str) -> str:
    return path.rpartition("/")[2]


def _combine(path: str, shards: list[FileDiff]) -> FileDiff:
    counts: dict[str, int] = {}
    for f in shards:
        for status, n in f.counts.items():
            counts[status] = counts.get(status, 0) + n
    removed = {p.name: (f, p) for f in shards for p in f.params if p.status == "removed"}
    params: list[ParamDiff] = []
    paired: set[str] = set()
    for f in shards:
        for p in f.params:
            if p.status != "added" or p.name not in removed or p.name in paired:
                continue
            source, old = removed[p.name]
            assert old.old is not None and p.new is not None
            paired.add(p.name)
            moved = old.old.same_tensor(p.new)
            note = f"{_shard_name(source.path)} -> {_shard_name(f.path)}"
            params.append(
                ParamDiff(p.name, "moved" if moved else "modified", old.old, p.new, note=note)
            )
            counts["added"] -= 1
            counts["removed"] -= 1
            status = "moved" if moved else "modified"
            counts[status] = counts.get(status, 0) + 1
    params += [
        p
        for f in shards
        for p in f.params
        if not (p.name in paired and p.status in ("added", "removed"))
    ]
    counts = {s: n for s, n in counts.items() if n}
    formats_old = [f.old_format for f in shards if f.old_format]
    formats_new = [f.new_format for f in shards if f.new_format]
    return FileDiff(
        path=path,
        params=tuple(sorted(params, key=ParamDiff.sort_key)),
        counts=counts,
        old_params=sum(f.old_params for f in shards),
        new_params=sum(f.new_params for f in shards),
        old_format=formats_old[0] if formats_old else None,
        new_format=formats_new[0] if formats_new else None,
        layout_changed=any(f.layout_changed for f in shards),
        missing=tuple(m for f in shards for m in f.missing),
        layout_changes=tuple(
            f"{_shard_name(f.path)}: {line}" for f in shards for line in f.layout_changes
        ),
    )
