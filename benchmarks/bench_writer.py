"""Benchmark `Smudger.write_file`: the placed path (each tensor pwritten at its offset by every
worker) against the stream path (tensors joined in order, as `smudge` gives them to git).

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_writer.py [--size-gib 1.0] [--tensors 200] [--repeat 5]
                                      [--limit-mib 768] [--workdir DIR] [--markdown OUT.md] [--keep]

The checkpoint is bench_filter.py's, committed with git-theta in a scratch repository. Each
run is a child process (wrapped in GNU time: peak RSS, user+sys CPU) that writes the checkpoint
from its metadata to a new file beside the work tree and times the call; the file must equal
the original byte for byte. The two paths take turns going first. Then each path runs once more
with its address space limited (`RLIMIT_AS`, as `ulimit -v`) below the checkpoint's size.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402  (a sibling script, not a package)
    CHECKPOINT,
    GIB,
    GNU_TIME,
    MIB,
    Sandbox,
    Sources,
    command_line,
    interleaved,
    load_average,
    log,
    machine_info,
    markdown_table,
    plan_checkpoint,
    read_usage,
    report_lines,
    require,
    runs_note,
    same_file,
    scratch,
    spread,
    text_table,
    write_checkpoint,
    write_markdown,
)
from harness import median as median_of  # noqa: E402

PATHS = ("stream", "placed")
HEADERS = ["path", "wall of write_file", "CPU (user+sys, whole child)", "peak RSS", "load avg"]


def child(mode: str, repo: Path, meta: Path, target: Path) -> int:
    """Write the checkpoint `meta` describes to `target` by `mode`; print the seconds it took."""
    from git_theta.atomic import atomic_write
    from git_theta.context import RepoContext
    from git_theta.git.repo import Repo
    from git_theta.smudge import Smudger

    data = meta.read_bytes()
    with RepoContext(Repo(repo)) as ctx:
        smudger = Smudger(ctx)
        start = time.perf_counter()
        if mode == "stream":  # what write_file did before the placed path
            with atomic_write(target, keep_mode=True) as f:
                smudger.smudge(data, CHECKPOINT, f)
        else:
            smudger.write_file(data, CHECKPOINT, target)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "workers": ctx.workers}))
    return 0


def run_child(
    sandbox: Sandbox, mode: str, repo: Path, meta: Path, target: Path, limit: int | None
) -> dict[str, float | str]:
    usage = sandbox.root / f"usage-{mode}.txt"
    usage.unlink(missing_ok=True)
    args = [GNU_TIME, "-f", "%M %U %S", "-o", str(usage), sys.executable, __file__]
    args += ["--child", mode, str(repo), str(meta), str(target)]

    def limited() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    subprocess.run(["sync"], check=True)  # earlier writes are not flushed on this clock
    load = load_average()
    proc = subprocess.run(
        args, env=sandbox.env, capture_output=True, check=False, preexec_fn=limited
    )
    rss, cpu = read_usage(usage)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return {"error": f"exit {proc.returncode}: {' '.join(tail)}", "load": load}
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return {"seconds": out["seconds"], "rss": rss, "cpu": cpu, "load": load}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=1.0, help="checkpoint size (default 1.0)")
    ap.add_argument("--tensors", type=int, default=200, help="tensor count (default 200)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per path; medians shown")
    ap.add_argument(
        "--limit-mib",
        type=int,
        default=768,
        help="address-space limit (ulimit -v) of the limited runs, MiB (default 768)",
    )
    ap.add_argument("--workdir", type=Path, help="parent of the scratch dir (default: TMPDIR)")
    ap.add_argument("--markdown", type=Path, help="also write the results as Markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument(
        "--child", nargs=4, metavar=("MODE", "REPO", "META", "TARGET"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.child is None and (args.size_gib <= 0 or args.tensors < 6 or args.repeat < 1):
        ap.error("need --size-gib > 0, --tensors >= 6 and --repeat >= 1")
    return args


def report(args: argparse.Namespace, root: Path, command: str) -> None:
    sandbox = Sandbox(root)
    sources = Sources.snapshot()
    plans = plan_checkpoint(int(args.size_gib * GIB), args.tensors)
    repo = root / "repo"
    original = repo / CHECKPOINT
    sandbox.run(["git", "init", "-q", str(repo)], cwd=root)
    sandbox.run(["git-theta", "install", "--local"], cwd=repo)
    sandbox.run(["git", "theta", "track", CHECKPOINT], cwd=repo)
    write_checkpoint(original, plans, args.seed)
    sandbox.run(["git", "add", ".gitattributes", CHECKPOINT], cwd=repo)
    sandbox.run(["git", "commit", "-q", "-m", "v1"], cwd=repo)
    meta = root / "metadata.json"
    meta.write_bytes(
        subprocess.run(
            ["git", "cat-file", "blob", f"HEAD:{CHECKPOINT}"],
            cwd=repo,
            env=sandbox.env,
            capture_output=True,
            check=True,
        ).stdout
    )
    size = original.stat().st_size
    target = repo / "written.safetensors"

    def once(mode: str, limit: int | None) -> dict[str, float | str]:
        result = run_child(sandbox, mode, repo, meta, target, limit)
        if "error" not in result:
            diff = same_file(target, original)
            if diff is not None:
                raise SystemExit(f"bench: the {mode} path's file differs at byte {diff}")
            target.unlink()
        log(f"{mode}{' (limited)' if limit else ''}: {result}")
        return result

    runs: dict[str, list[dict[str, float | str]]] = {m: [] for m in PATHS}
    for _run, mode in interleaved(args.repeat, PATHS):
        runs[mode].append(once(mode, None))
    limit = args.limit_mib * MIB
    limited = {mode: once(mode, limit) for mode in PATHS}

    def cells(mode: str) -> list[str]:
        ok = [r for r in runs[mode] if "error" not in r]
        if len(ok) != len(runs[mode]):
            return [mode, "failed", "", "", ""]
        loads = sorted(float(str(r["load"]).split()[0]) for r in ok)
        return [
            mode,
            spread([float(r["seconds"]) for r in ok], lambda v: f"{v:.2f}", "s"),
            spread([float(r["cpu"]) for r in ok], lambda v: f"{v:.2f}", "s"),
            spread([float(r["rss"]) / MIB for r in ok], lambda v: f"{v:.0f}", "MiB"),
            f"{loads[0]:.2f}–{loads[-1]:.2f}",
        ]

    rows = [cells(mode) for mode in PATHS]
    largest = max(p.nbytes for p in plans)
    wall = {m: [float(r["seconds"]) for r in runs[m] if "error" not in r] for m in PATHS}
    lines = [
        f"checkpoint: {size / MIB:.1f} MiB, {len(plans)} tensors, largest {largest / MIB:.1f} MiB",
        f"stream ÷ placed wall (medians): {_ratio(wall['stream'], wall['placed'])}",
        *[
            f"{mode} with address space limited to {args.limit_mib} MiB (ulimit -v): "
            + (
                f"failed ({result['error']})"
                if "error" in result
                else f"{float(result['seconds']):.2f} s, byte-identical"
            )
            for mode, result in limited.items()
        ],
    ]
    edited = sources.changed(Sources.snapshot())
    if edited:
        lines.append(f"WARNING: git_theta sources changed during this run: {', '.join(edited)}")
    print(text_table(HEADERS, rows, plain=True))
    report_lines(lines)
    if args.markdown is not None:
        write_markdown(
            args.markdown,
            title="git-theta: write_file, placed vs stream",
            command=command,
            table=markdown_table(HEADERS, rows),
            about=f"{runs_note(args.repeat)} Wall is the write_file call alone; CPU and peak "
            "RSS are the whole child process (interpreter start and imports included), from "
            "GNU time. The page cache is warm (the objects were just written); no fsync.",
            lines=lines,
            machine=machine_info(sandbox, sources),
        )


def _ratio(a: Sequence[float], b: Sequence[float]) -> str:
    x, y = median_of(a), median_of(b)
    return "n/a" if math.isnan(x) or math.isnan(y) or not y else f"{x / y:.2f}x"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        mode, repo, meta, target = args.child
        return child(mode, Path(repo), Path(meta), Path(target))
    require("git", GNU_TIME)
    command = command_line(argv)
    with scratch(args.workdir, keep=args.keep, prefix="git-theta-bench-writer-") as root:
        report(args, root, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
