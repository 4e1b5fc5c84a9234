"""Benchmark the store lifecycle commands: `git theta fsck`, `prune` and `du`.

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_store.py [--size-gib 1.0] [--versions 10] [--tensors 200]
                                     [--changed-fraction 0.1] [--repeat 5] [--workdir DIR] [--keep]

It builds a repository whose checkpoint (bench_filter.py's synthetic safetensors file) is
committed in `--versions` versions, each changing `--changed-fraction` of the tensors, then
makes two of them unreachable (reset, reflog expire, gc) and ages the store's files by two days,
so prune has work. Then, interleaved and `--repeat` times, with a warm page cache:

- reference: read every object file of the store and sha256 it, on one thread per core (what
  "read and hash the store once" costs in this process setup; sha256 is what names an object);
  a single-thread xxh3 read is shown beside it;
- `git theta fsck` (every object of every reachable version: sha256 against the oid, header,
  content hash against the metadata) and `git theta fsck --decode` (the same, plus decoding
  each object and checking its tensor);
- `git theta prune --dry-run` (reachability, the scan, the plan) and `git theta du`.

A last real `git theta prune` is timed once. Medians with [min-max], the load average around the
runs, and the target (fsck at most 1.5x the reference) are printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402  (a sibling script, not a package)
    CHECKPOINT,
    GIB,
    Sandbox,
    choose_changed,
    log,
    plan_checkpoint,
    scratch,
    write_changed,
    write_checkpoint,
)

FSCK_VS_REFERENCE = 1.5
READ_BYTES = 16 << 20
AGE_SECONDS = 2 * 86400
UNREACHABLE_VERSIONS = 2


def build(sandbox: Sandbox, repo: Path, args: argparse.Namespace) -> None:
    """The repository: `versions` commits of the checkpoint, the last two made unreachable."""
    sandbox.run(["git", "init", "-q", str(repo)], cwd=sandbox.root)
    sandbox.run(["git-theta", "install", "--local"], cwd=repo)
    sandbox.run(["git-theta", "track", CHECKPOINT], cwd=repo)
    sandbox.run(["git", "commit", "-q", "-m", "track"], cwd=repo)
    plans = plan_checkpoint(int(args.size_gib * GIB), args.tensors)
    work = sandbox.root / "versions"
    work.mkdir()
    previous = work / "v1.safetensors"
    write_checkpoint(previous, plans, args.seed)
    for k in range(1, args.versions + 1):
        if k > 1:
            current = work / f"v{k}.safetensors"
            picked = choose_changed(plans[k % 7 :], args.changed_fraction)
            write_changed(previous, current, picked, args.seed + k)
            previous.unlink()
            previous = current
        shutil.copyfile(previous, repo / CHECKPOINT)
        started = time.perf_counter()
        sandbox.run(["git", "add", CHECKPOINT], cwd=repo)
        sandbox.run(["git", "commit", "-q", "-m", f"v{k}"], cwd=repo)
        log(f"committed v{k} ({time.perf_counter() - started:.1f} s)")
    shutil.rmtree(work)
    sandbox.run(["git", "reset", "-q", "--hard", f"HEAD~{UNREACHABLE_VERSIONS}"], cwd=repo)
    sandbox.run(["git", "reflog", "expire", "--expire=now", "--all"], cwd=repo)
    sandbox.run(["git", "gc", "-q", "--prune=now"], cwd=repo)
    past = time.time() - AGE_SECONDS
    for path in (repo / ".git" / "theta").rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def object_files(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / ".git" / "theta" / "objects").glob("*/*/*") if p.is_file())


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buf = bytearray(READ_BYTES)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def reference_sha256(files: Sequence[Path]) -> float:
    """Seconds to read and sha256 every file, one thread per core (as fsck runs)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_sha256_file, files))
    return time.perf_counter() - start


def reference_xxh3(files: Sequence[Path]) -> float:
    """Seconds to read every file and xxh3 it on one thread."""
    buf = bytearray(READ_BYTES)
    view = memoryview(buf)
    start = time.perf_counter()
    for path in files:
        h = xxhash.xxh3_128()
        with path.open("rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
        h.hexdigest()
    return time.perf_counter() - start


def timed_command(sandbox: Sandbox, repo: Path, *args: str) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        sandbox.run(["git-theta", *args], cwd=repo)
        return time.perf_counter() - start

    return run


def cell(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} s [{min(values):.2f}-{max(values):.2f}]"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=1.0, help="checkpoint size (default 1.0)")
    ap.add_argument("--versions", type=int, default=10, help="committed versions (default 10)")
    ap.add_argument("--tensors", type=int, default=200, help="tensor count (default 200)")
    ap.add_argument(
        "--changed-fraction", type=float, default=0.1, help="tensors changed per version"
    )
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs (default 5)")
    ap.add_argument("--workdir", type=Path, help="parent of the scratch dir (default: TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with scratch(args.workdir, keep=args.keep, prefix="bench-store-") as root:
        sandbox = Sandbox(root)
        repo = root / "repo"
        build(sandbox, repo, args)
        files = object_files(repo)
        store_bytes = sum(p.stat().st_size for p in files)
        log(f"store: {len(files)} objects, {store_bytes / (1 << 20):.0f} MiB; warming the cache")
        reference_xxh3(files)
        runs: dict[str, Callable[[], float]] = {
            "reference: read + sha256 (threads)": lambda: reference_sha256(files),
            "reference: read + xxh3 (1 thread)": lambda: reference_xxh3(files),
            "git theta fsck": timed_command(sandbox, repo, "fsck"),
            "git theta fsck --decode": timed_command(sandbox, repo, "fsck", "--decode"),
            "git theta prune --dry-run": timed_command(sandbox, repo, "prune", "--dry-run"),
            "git theta du": timed_command(sandbox, repo, "du"),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        load_before = os.getloadavg()
        for i in range(args.repeat):
            for name, run in runs.items():
                times[name].append(run())
            log(f"run {i + 1}/{args.repeat} done")
        load_after = os.getloadavg()
        prune_out = ""
        start = time.perf_counter()
        prune_out = sandbox.run(["git-theta", "prune"], cwd=repo)
        prune_seconds = time.perf_counter() - start
        after = object_files(repo)

        print(
            f"store: {len(files)} objects, {store_bytes / (1 << 20):.0f} MiB; "
            f"{args.versions} versions of a {args.size_gib} GiB checkpoint "
            f"({args.changed_fraction:.0%} of tensors changed per version), "
            f"{UNREACHABLE_VERSIONS} made unreachable"
        )
        width = max(len(n) for n in runs)
        for name in runs:
            print(f"{name:<{width}}  {cell(times[name])}")
        print(f"{'git theta prune (once)':<{width}}  {prune_seconds:.2f} s: {prune_out.strip()}")
        print(f"objects after prune: {len(after)}")
        fsck = statistics.median(times["git theta fsck"])
        ref = statistics.median(times["reference: read + sha256 (threads)"])
        ref1 = statistics.median(times["reference: read + xxh3 (1 thread)"])
        verdict = "met" if fsck <= FSCK_VS_REFERENCE * ref else "NOT met"
        print(
            f"fsck / reference (sha256, threads): {fsck / ref:.2f}x (target <= "
            f"{FSCK_VS_REFERENCE}x: {verdict}); fsck / xxh3 single-thread read: {fsck / ref1:.2f}x"
        )
        print(
            f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
            f"{os.cpu_count()} CPUs; runs: {args.repeat}, interleaved, warm page cache"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
