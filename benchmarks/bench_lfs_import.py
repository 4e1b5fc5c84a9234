"""Benchmark `git theta migrate import`: a Git LFS repository's history rewritten to git-theta.

Run on demand, never by the test suite:

    python benchmarks/bench_lfs_import.py [--size-gib 1.0] [--versions 10] [--tensors 200]
                                          [--changed-fraction 0.1] [--workdir DIR] [--keep]

It commits bench_filter.py's synthetic safetensors checkpoint with Git LFS in `--versions`
versions, each changing `--changed-fraction` of the tensors, then times
`git theta migrate import --include '*.safetensors' --everything` once (a rewrite cannot be
repeated on the same history) and prints the Git LFS store and the git-theta store after it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filter import (  # noqa: E402 - the sibling script is the checkpoint factory
    CHECKPOINT,
    GIB,
    Sandbox,
    choose_changed,
    plan_checkpoint,
    tree_bytes,
    write_changed,
    write_checkpoint,
)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def build(sandbox: Sandbox, repo: Path, args: argparse.Namespace) -> None:
    sandbox.run(["git", "init", "-q", str(repo)], cwd=sandbox.root)
    sandbox.run(["git", "lfs", "install", "--local"], cwd=repo)
    sandbox.run(["git-theta", "install", "--local"], cwd=repo)
    sandbox.run(["git", "lfs", "track", CHECKPOINT], cwd=repo)
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
        sandbox.run(["git", "add", "."], cwd=repo)
        sandbox.run(["git", "commit", "-q", "-m", f"v{k}"], cwd=repo)
        log(f"committed v{k} with Git LFS")
    shutil.rmtree(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--tensors", type=int, default=200)
    parser.add_argument("--changed-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-lfs-import-", dir=args.workdir))
    try:
        sandbox = Sandbox(root)
        repo = root / "repo"
        build(sandbox, repo, args)
        lfs = tree_bytes(repo / ".git" / "lfs" / "objects")
        sandbox.run(["sync"], cwd=repo)
        start = time.perf_counter()
        out = sandbox.run(
            ["git-theta", "migrate", "import", "--include", CHECKPOINT, "--everything"], cwd=repo
        )
        seconds = time.perf_counter() - start
        theta = tree_bytes(repo / ".git" / "theta" / "objects")
        print(out.strip())
        print(
            f"| {args.size_gib:g} GiB x {args.versions} versions, "
            f"{args.changed_fraction:g} changed per version | {seconds:.1f} s "
            f"| Git LFS store {lfs / GIB:.2f} GiB | git-theta store {theta / GIB:.2f} GiB |"
        )
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
