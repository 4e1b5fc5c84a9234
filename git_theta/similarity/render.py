"""`git theta similar`'s output: a ranked table (text or markdown) or a JSON document."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from git_theta.similarity.ranking import Comparison, Score

__all__ = ["rank", "to_json", "to_markdown", "to_text"]


def rank(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Most similar first; revisions without a cosine (a zero task vector, or not compared)
    last, each group in name order."""

    def key(c: Comparison) -> tuple[int, float, str]:
        cos = c.cosine
        return (0, -cos, c.revision) if cos is not None else (1, 0.0, c.revision)

    return sorted(comparisons, key=key)


def _cos(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _compared(c: Comparison) -> str:
    if c.note:
        return f"not compared: {c.note}"
    pairs = ", ".join(f"{k} {n}" for k, n in sorted(c.pairs.items()))
    skipped = sum(c.skipped.values())
    text = f"{c.common} params ({pairs})" if pairs else "no parameters in common"
    if c.cosine is None and c.common:
        text += "; no change against the base" if c.total.other_sq == 0 else "; target unchanged"
    return text + (f"; {skipped} skipped" if skipped else "")


def _score_json(s: Score) -> dict[str, Any]:
    return {"cosine": s.cosine, "norm": s.norm, "target_norm": s.target_norm, "dot": s.dot}


def to_json(target: str, paths: Sequence[str], ranked: Sequence[Comparison]) -> str:
    doc = {
        "target": target,
        "paths": list(paths),
        "revisions": [
            {
                "rank": i + 1,
                "revision": c.revision,
                "commit": c.commit,
                "base": c.base,
                **_score_json(c.total),
                "groups": {g: _score_json(s) for g, s in sorted(c.groups.items())},
                "compared": {
                    "parameters": c.common,
                    "pairs": dict(sorted(c.pairs.items())),
                    "skipped": dict(sorted(c.skipped.items())),
                },
                "note": c.note,
            }
            for i, c in enumerate(ranked)
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def to_text(target: str, paths: Sequence[str], ranked: Sequence[Comparison], groups: bool) -> str:
    width = max([len("revision"), *(len(c.revision) for c in ranked)])
    lines = [
        f"task vectors similar to {target} in {', '.join(paths)} (each against its merge base)",
        f"{'rank':>4}  {'revision':<{width}}  {'cosine':>8}  {'|tau|':>10}  compared",
    ]
    for i, c in enumerate(ranked):
        lines.append(
            f"{i + 1:>4}  {c.revision:<{width}}  {_cos(c.cosine):>8}  "
            f"{c.total.norm:>10.4g}  {_compared(c)}"
        )
        if groups:
            for g, s in sorted(c.groups.items()):
                lines.append(f"{'':>4}  {'':<{width}}  {_cos(s.cosine):>8}  {s.norm:>10.4g}  {g}")
    if ranked:
        lines.append(f"|tau| of {target}: {ranked[0].total.target_norm:.4g}")
    return "\n".join(lines) + "\n"


def to_markdown(target: str, paths: Sequence[str], ranked: Sequence[Comparison]) -> str:
    lines = [
        f"Task vectors similar to `{target}` in {', '.join(f'`{p}`' for p in paths)}",
        "",
        "| rank | revision | cosine | \\|tau\\| | compared |",
        "|---:|---|---:|---:|---|",
    ]
    for i, c in enumerate(ranked):
        lines.append(
            f"| {i + 1} | `{c.revision}` | {_cos(c.cosine)} | {c.total.norm:.4g} | {_compared(c)} |"
        )
    return "\n".join(lines) + "\n"
