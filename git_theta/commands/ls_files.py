"""`git theta ls-files [REV]`: the tracked checkpoints of a revision (default: the index)."""

from __future__ import annotations

from typing import TextIO

from git_theta import metadata as md
from git_theta.git.patch import quote_path
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata, update_refs

__all__ = ["PARAM_COLUMNS", "list_checkpoints", "ls_files"]

#: The header of each checkpoint's parameter rows with --params (tab-separated, as the rows).
# `stored`: bytes of the objects the entry's last link adds (its dense object, or the objects
# of its last update: what this version cost the store).
PARAM_COLUMNS = "parameter\tdtype\tshape\tbytes\tupdate\tstored"


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def list_checkpoints(repo: Repo, rev: str | None) -> list[tuple[str, Metadata]]:
    """(path, metadata) of every blob in `rev` (or the index) that is git-theta metadata."""
    if rev is None:
        raw = repo.git("ls-files", "-s", "-z")
        records = [r.split(b"\t", 1) for r in raw.split(b"\0") if r]
        entries = [
            (info.split()[1].decode(), path.decode("utf-8", "surrogateescape"))
            for info, path in records
            if info.split()[2] == b"0"
        ]
    else:
        raw = repo.git("ls-tree", "-r", "-z", "--full-tree", rev)
        records = [r.split(b"\t", 1) for r in raw.split(b"\0") if r]
        entries = [
            (info.split()[2].decode(), path.decode("utf-8", "surrogateescape"))
            for info, path in records
            if info.split()[1] == b"blob"
        ]
    if not entries:
        return []
    sizes = repo.git(
        "cat-file",
        "--batch-check=%(objectsize)",
        input="".join(f"{oid}\n" for oid, _ in entries).encode(),
    ).split()
    found = []
    for (oid, path), size in zip(entries, sizes, strict=True):
        if int(size) > md.MAX_METADATA_BYTES:
            continue
        blob = repo.read_blob(oid)
        if blob is None or not md.looks_like_metadata(blob[: len(md.MAGIC)]):
            continue
        found.append((path, md.decode(blob, source=f"{rev or 'index'}:{path}")))
    return found


def ls_files(rev: str | None, *, params: bool, out: TextIO) -> int:
    repo = Repo()
    listed = list_checkpoints(repo, rev)
    for path, meta in listed:
        total = sum(e.nbytes for e in meta.params.values())
        stored = sum(ref.size for ref in meta.objects())
        out.write(
            f"{quote_path(path)}\t{meta.format}\t{len(meta.params)} params\t{_human(total)}"
            f"\t(objects {_human(stored)})\n"
        )
        if params:
            out.write(f"  {PARAM_COLUMNS}\n")
            for name in sorted(meta.params):
                e = meta.params[name]
                shape = "x".join(map(str, e.shape)) or "scalar"
                last = update_refs(e.updates[-1]) if e.updates else [e.object]
                stored = sum(ref.size for ref in last)
                out.write(f"  {name}\t{e.dtype}\t{shape}\t{e.nbytes}\t{e.update_type}\t{stored}\n")
    _write_sharded(listed, out)
    return 0


def _write_sharded(listed: list[tuple[str, Metadata]], out: TextIO) -> None:
    """One line per sharded checkpoint (its shards as one model): shards, parameters, bytes,
    and the distinct objects they share."""
    from git_theta.sharded.names import shard_group

    groups: dict[str, list[Metadata]] = {}
    for path, meta in listed:
        key = shard_group(path)
        if key is not None:
            groups.setdefault(key, []).append(meta)
    for key, metas in groups.items():
        if len(metas) < 2:
            continue
        names = {n for m in metas for n in m.params}
        total = sum(e.nbytes for m in metas for e in m.params.values())
        objects = {ref.oid: ref.size for m in metas for ref in m.objects()}
        out.write(
            f"{quote_path(key)}\t{len(metas)} shards\t{len(names)} params\t{_human(total)}"
            f"\t(objects {_human(sum(objects.values()))})\n"
        )
