"""The memory scenarios of issue 15's checkout targets, as `bench_peers.py` subcommands (slow:
4 GiB and 8 GiB checkpoints; check `df -h` first, they need about 5x the size free):

- `ulimit`: checkout of a single-file checkpoint larger than Git may hold, with the whole
  tree's address space limited (`ulimit -v`, inherited by Git, its filter and hooks). The
  smudge path is expected to fail there (Git buffers the whole smudged file); the direct path
  must succeed, byte-identical.
- `sharded`: checkout of a sharded BF16 model (shards + `model.safetensors.index.json`): peak
  RSS of the whole tree against 2 x the largest tensor + 200 MB.

Only git-theta runs here, on each checkout path it has.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from harness import (
    GIB,
    MB,
    MIB,
    Sandbox,
    Sources,
    TensorPlan,
    choose_changed,
    load_average,
    log,
    markdown_table,
    plan_checkpoint,
    retire,
    same_file,
    scratch,
    write_changed,
    write_checkpoint,
)
from peers import Peer, has_direct_checkout, theta_peers, timed_tree
from tree_rss import run_tree

INDEX = "model.safetensors.index.json"
RSS_SLACK = 200 * MB
LAYERS_PER_SHARD = 8
VOCAB = 32_000


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _check_disk(root: Path, need: int) -> None:
    free = _free_bytes(root)
    if free < need:
        raise SystemExit(
            f"bench: {root}: {free / GIB:.1f} GiB free, this scenario needs about {need / GIB:.0f} GiB"
        )


def _bf16_shard(width: int, first_layer: int, embed: bool) -> list[TensorPlan]:
    """One shard of a BF16 decoder: LAYERS_PER_SHARD layers, the token embedding in the first."""
    d, f = width, 4 * width
    shapes: list[tuple[str, tuple[int, ...]]] = (
        [("model.embed_tokens.weight", (VOCAB, d))] if embed else []
    )
    for i in range(first_layer, first_layer + LAYERS_PER_SHARD):
        p = f"model.layers.{i}"
        shapes += [
            (f"{p}.input_layernorm.weight", (d,)),
            *[(f"{p}.self_attn.{m}_proj.weight", (d, d)) for m in "qkvo"],
            (f"{p}.post_attention_layernorm.weight", (d,)),
            (f"{p}.mlp.gate_proj.weight", (f, d)),
            (f"{p}.mlp.up_proj.weight", (f, d)),
            (f"{p}.mlp.down_proj.weight", (d, f)),
        ]
    plans, offset = [], 0
    for name, shape in shapes:
        plans.append(TensorPlan(name, "BF16", shape, offset))
        offset += plans[-1].nbytes
    return plans


def _shard_name(k: int, n: int) -> str:
    return f"model-{k:05d}-of-{n:05d}.safetensors"  # as transformers' save_pretrained names them


def write_sharded(folder: Path, size_gib: float, shards: int, seed: int) -> list[list[TensorPlan]]:
    """`shards` BF16 safetensors files of about size/shards each, plus the index."""
    per_shard = size_gib * GIB / shards
    width = 64 * max(1, round(math.sqrt(per_shard / (2 * 16 * LAYERS_PER_SHARD)) / 64))
    layout = [_bf16_shard(width, k * LAYERS_PER_SHARD, k == 0) for k in range(shards)]
    weight_map = {}
    for k, plans in enumerate(layout, start=1):
        name = _shard_name(k, shards)
        write_checkpoint(folder / name, plans, seed + k)
        weight_map.update({p.name: name for p in plans})
    total = sum(p.nbytes for plans in layout for p in plans)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return layout


def _commit_two_versions(
    sandbox: Sandbox, peer: Peer, repo: Path, v1: Path, v2: Path, names: Sequence[str]
) -> None:
    """Track `*.safetensors`, commit the files of `v1`, then of `v2` (directories)."""
    peer.setup(sandbox, repo, ["*.safetensors"])
    for k, src in enumerate((v1, v2), start=1):
        time.sleep(1.1)
        for name in names:
            shutil.copyfile(src / name, repo / name)
        log(f"{peer.label}: add + commit v{k} ...")
        timed_tree(sandbox, peer.add_commit(list(names), f"v{k}"), cwd=repo)


def _checkout_row(
    sandbox: Sandbox, peer: Peer, repo: Path, v1: Path, names: Sequence[str], limit_kib: int | None
) -> tuple[list[str], float]:
    """Checkout of v1 from v2 (under `ulimit -v` when given): the report row and peak RSS."""
    script = peer.checkout("HEAD~1")
    if limit_kib is not None:
        script = f"ulimit -v {limit_kib} && {script}"
    log(f"{peer.label}: {script} ...")
    res = run_tree(["sh", "-c", script], cwd=repo, env=sandbox.env)
    identical = status = "—"
    if res.returncode == 0:
        bad = [n for n in names if same_file(repo / n, v1 / n) is not None]
        identical = "yes" if not bad else f"NO: {', '.join(bad)}"
        dirty = sandbox.run(["git", "status", "--porcelain"], cwd=repo).strip()
        status = "clean" if not dirty else repr(dirty)
    # Git's own complaint (out of memory) says more than the filter's broken pipe after it.
    lines = res.stderr.strip().splitlines() or [""]
    error = next((ln for ln in lines if ln.startswith(("fatal:", "error:"))), lines[-1])[:120]
    row = [
        peer.label,
        f"exit {res.returncode}",
        f"{res.seconds:.2f} s",
        f"{res.peak_rss / MIB:.0f} MiB",
        f"{res.cpu:.2f} s",
        identical,
        status,
        f"`{error}`" if error else "",
    ]
    return row, res.peak_rss


HEADERS = [
    "path",
    "result",
    "checkout",
    "peak RSS (tree)",
    "CPU (tree)",
    "byte-identical",
    "git status",
    "Git's error",
]


def _report(args: argparse.Namespace, title: str, rows: list[list[str]], notes: list[str]) -> None:
    text = "\n".join(
        [f"### {title}", "", markdown_table(HEADERS, rows), "", *[f"- {n}" for n in notes], ""]
    )
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


def _scenario(args: argparse.Namespace, title: str, make: str) -> int:
    with scratch(args.workdir, keep=args.keep, prefix=f"git-theta-{make}-") as root:
        _check_disk(root, int(args.size_gib * GIB * 5.5))
        sandbox = Sandbox(root)
        sandbox.run(["git-theta", "install"], cwd=root)
        v1, v2 = root / "v1", root / "v2"
        v1.mkdir()
        v2.mkdir()
        start = time.perf_counter()
        if make == "ulimit":
            plans = plan_checkpoint(int(args.size_gib * GIB), 200)
            write_checkpoint(v1 / "model.safetensors", plans, args.seed)
            write_changed(
                v1 / "model.safetensors",
                v2 / "model.safetensors",
                choose_changed(plans, 0.01),
                args.seed,
            )
            names = ["model.safetensors"]
            largest = max(p.nbytes for p in plans)
        else:
            layout = write_sharded(v1, args.size_gib, args.shards, args.seed)
            names = [_shard_name(k, args.shards) for k in range(1, args.shards + 1)]
            for name, plans in zip(names, layout, strict=True):
                write_changed(v1 / name, v2 / name, choose_changed(plans, 0.0), args.seed)
            shutil.copyfile(v1 / INDEX, v2 / INDEX)
            largest = max(p.nbytes for plans in layout for p in plans)
        log(f"wrote both versions in {time.perf_counter() - start:.0f} s")
        limit = args.limit_kib if make == "ulimit" else None
        rows, notes = (
            [],
            [f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load before {load_average()}"],
        )
        for peer in theta_peers(has_direct_checkout(sandbox)):
            repo = root / f"repo-{peer.key}"
            tracked = names if make == "ulimit" else [*names, INDEX]
            _commit_two_versions(sandbox, peer, repo, v1, v2, tracked)
            row, _peak = _checkout_row(sandbox, peer, repo, v1, tracked, limit)
            rows.append(row)
            if not args.keep:
                retire(repo)
        sizes = ", ".join(f"{(v1 / n).stat().st_size / GIB:.2f} GiB" for n in names)
        notes += [
            f"load after {load_average()}",
            f"git-theta sources: {Sources.snapshot().fingerprint()}",
            f"files: {sizes}; largest tensor {largest / MIB:.0f} MiB; "
            f"target peak RSS ≤ 2 × largest + 200 MB = {(2 * largest + RSS_SLACK) / MIB:.0f} MiB",
            "checkout: "
            + shlex.join(["git", "checkout", "-q", "HEAD~1"])
            + " (v2 → v1)"
            + (f" under `ulimit -v {limit}`" if limit else ""),
        ]
        _report(args, title, rows, notes)
    return 0


def ulimit(args: argparse.Namespace) -> int:
    return _scenario(
        args,
        f"Checkout of a {args.size_gib:g} GiB single-file checkpoint, address space ≤ {args.limit_kib} KiB",
        "ulimit",
    )


def sharded(args: argparse.Namespace) -> int:
    return _scenario(
        args,
        f"Checkout of a {args.size_gib:g} GiB sharded BF16 model ({args.shards} shards)",
        "sharded",
    )


def add_memory_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    lim = sub.add_parser("ulimit", parents=[common], help="checkout under ulimit -v (slow)")
    lim.add_argument("--size-gib", type=float, default=4.0)
    lim.add_argument("--limit-kib", type=int, default=2 * 1024 * 1024)
    lim.set_defaults(func=ulimit)
    sh = sub.add_parser("sharded", parents=[common], help="sharded BF16 model checkout (slow)")
    sh.add_argument("--size-gib", type=float, default=8.0)
    sh.add_argument("--shards", type=int, default=4)
    sh.set_defaults(func=sharded)
