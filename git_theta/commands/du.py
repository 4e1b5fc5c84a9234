"""`git theta du [REV...] [--format json]`: what the store holds (see git_theta/store/du.py)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from git_theta.git.repo import Repo
from git_theta.store import open_store
from git_theta.store.du import disk_usage

__all__ = ["du"]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _table(rows: list[dict[str, Any]], first: str) -> list[str]:
    head = f"{first:<44} {'raw':>10} {'stored':>10} {'shared':>10} {'missing':>8}"
    lines = [head]
    for r in rows:
        label = (
            r["path"] if first == "checkpoint" else f"{r['commit'][:10] or 'index':<10} {r['path']}"
        )
        if first == "checkpoint":
            label += f" ({r['versions']} version(s))"
        lines.append(
            f"{label:<44} {_human(r['raw_bytes']):>10} {_human(r['stored_bytes']):>10} "
            f"{_human(r['shared_bytes']):>10} {r['missing_objects']:>8}"
        )
    return lines


def du(revs: list[str], *, fmt: str, out: TextIO) -> int:
    """Print the store's usage as a table (`fmt` "text") or JSON; returns the exit code."""
    repo = Repo()
    report = disk_usage(repo, open_store(repo), revs)
    if fmt == "json":
        out.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return 0
    lines = _table(report["versions"], "version")
    lines += [""] + _table(report["checkpoints"], "checkpoint")
    total = report["total"]
    lines += [
        "",
        f"store {report['store']}: {total['objects']} object(s), {_human(total['stored_bytes'])};"
        f" referenced {total['referenced_objects']} ({_human(total['referenced_bytes'])})",
    ]
    plan = report["prune"]
    if plan is None:
        lines.append("prune: not available (the store is shared through theta.storage)")
    else:
        lines.append(
            f"prune would reclaim {plan['objects']} object(s) ({_human(plan['bytes'])}) and "
            f"{plan['temp_files']} temp file(s) ({_human(plan['temp_bytes'])})"
            + (
                f"; {plan['kept_fresh']} recent unreferenced object(s) kept"
                if plan["kept_fresh"]
                else ""
            )
        )
    out.write("\n".join(lines) + "\n")
    return 0
