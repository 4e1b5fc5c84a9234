"""Checkout through Git's smudge buffer vs the direct path (docs/design.md, "Direct checkout").

Builds the synthetic checkpoint (harness.plan_checkpoint), commits two versions, then checks
out the other version with `theta.directCheckoutBytes` at its default (direct) and at 0
(smudge), interleaved. Per run: wall seconds, the peak RSS GNU time reports for `git checkout`
(the largest single process of the tree: git or the filter), and `git status` right after,
which must print nothing. Every checkout is verified byte for byte.

    python benchmarks/bench_direct_checkout.py --size-gib 1.0 --repeat 3
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import time
from pathlib import Path

from harness import (
    CHECKPOINT,
    GIB,
    GNU_TIME,
    MIB,
    Sandbox,
    choose_changed,
    command_line,
    interleaved,
    load_average,
    log,
    plan_checkpoint,
    scratch,
    spread,
    text_table,
    write_changed,
    write_checkpoint,
)

PATHS = {"direct": None, "smudge": "0"}


def _checkout(
    sandbox: Sandbox, repo: Path, rev: str, direct_bytes: str | None
) -> tuple[float, float]:
    env = dict(sandbox.env)
    if direct_bytes is not None:
        env["GIT_THETA_DIRECT_CHECKOUT_BYTES"] = direct_bytes
    usage = repo.parent / "usage.txt"
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    subprocess.run(
        [GNU_TIME, "-f", "%M", "-o", str(usage), "git", "checkout", "-q", rev],
        cwd=repo,
        env=env,
        check=True,
    )
    seconds = time.perf_counter() - start
    return seconds, int(usage.read_text().split()[-1]) * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--tensors", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    with scratch(args.workdir, keep=args.keep, prefix="bench-direct-") as root:
        sandbox = Sandbox(root)
        plans = plan_checkpoint(int(args.size_gib * GIB), args.tensors)
        v1, v2 = root / "v1.safetensors", root / "v2.safetensors"
        write_checkpoint(v1, plans, seed=1)
        write_changed(v1, v2, choose_changed(plans, 0.01), seed=2)
        repo = root / "repo"
        sandbox.run(["git", "init", "-q", str(repo)], cwd=root)
        sandbox.run(["git-theta", "install", "--local"], cwd=repo)
        sandbox.run(["git-theta", "track", CHECKPOINT], cwd=repo)
        for version in (v1, v2):
            (repo / CHECKPOINT).write_bytes(version.read_bytes())
            sandbox.run(["git", "add", "-A"], cwd=repo)
            sandbox.run(["git", "commit", "-q", "-m", version.stem], cwd=repo)
        sandbox.run(["git", "branch", "v1", "HEAD~1"], cwd=repo)
        results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in PATHS}
        loads = [load_average()]
        for run, path in interleaved(args.repeat, list(PATHS)):
            for rev, want in (("v1", v1), ("main", v2)):
                seconds, rss = _checkout(sandbox, repo, rev, PATHS[path])
                if not filecmp.cmp(repo / CHECKPOINT, want, shallow=False):
                    raise SystemExit(f"bench: {path} checkout of {rev} differs")
                start = time.perf_counter()
                status = sandbox.run(["git", "status", "--porcelain"], cwd=repo)
                status_s = time.perf_counter() - start
                if status.strip():
                    raise SystemExit(f"bench: after the {path} checkout of {rev}: {status}")
                results[path].append((seconds, rss, status_s))
                log(
                    f"run {run} {path} {rev}: {seconds:.2f} s, {rss / MIB:.0f} MiB, status {status_s:.2f} s"
                )
        loads.append(load_average())
    rows = [
        [
            path,
            spread([r[0] for r in runs], lambda v: f"{v:.2f}", "s"),
            spread([r[1] / MIB for r in runs], lambda v: f"{v:.0f}", "MiB"),
            spread([r[2] for r in runs], lambda v: f"{v:.2f}", "s"),
        ]
        for path, runs in results.items()
    ]
    print(f"{command_line(argv)}; load average before/after: {loads[0]} / {loads[1]}")
    print(text_table(["path", "checkout", "peak RSS (largest process)", "status after"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
