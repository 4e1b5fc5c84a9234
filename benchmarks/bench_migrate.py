"""Benchmark the one-time move of git-theta's objects out of `.git/lfs/objects`.

Run on demand, never by the test suite:

    python benchmarks/bench_migrate.py [--ours 2000] [--lfs 500] [--object-kib 64] [--repeat 3]

Each run builds, in a temporary directory, a common git dir whose `lfs/objects` holds `--ours`
git-theta objects (float32 tensors of `--object-kib` KiB, encoded as `git add` encodes them) and
`--lfs` Git LFS objects (random bytes of the same size), then times
`git_theta.store.migrate.migrate`: the scan (4 KiB read of each file), a hard link and an unlink
per object of ours, the marker. It also times `pending`, the check every git-theta start pays
once the marker is written. Prints the median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
import timeit
from pathlib import Path

import numpy as np

from git_theta.store import ObjectStore, encode_object
from git_theta.store.migrate import migrate, pending
from git_theta.tensor import RawTensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import scratch  # noqa: E402


def _place(common: Path, blob: bytes) -> None:
    oid = hashlib.sha256(blob).hexdigest()
    path = common / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def _build(common: Path, ours: int, lfs: int, object_kib: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = object_kib * 1024 // 4
    for _ in range(ours):
        data = rng.standard_normal(n).astype("<f4").tobytes()
        _place(common, b"".join(bytes(c) for c in encode_object(RawTensor("F32", (n,), data))))
    for _ in range(lfs):
        _place(common, os.urandom(object_kib * 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=int, default=2000)
    parser.add_argument("--lfs", type=int, default=500)
    parser.add_argument("--object-kib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times = []
    for run in range(args.repeat):
        with scratch(None, keep=False, prefix="bench-migrate-") as top:
            common = top / "repo.git"
            _build(common, args.ours, args.lfs, args.object_kib, run)
            start = time.perf_counter()
            result = migrate(ObjectStore(common / "theta"), common)
            times.append(time.perf_counter() - start)
            assert (result.moved, result.left) == (args.ours, 0), result
            checks = 10_000
            per_check = timeit.timeit(lambda c=common: pending(c), number=checks) / checks
    print(
        f"migrate: {args.ours} git-theta + {args.lfs} Git LFS objects of {args.object_kib} KiB: "
        f"median {statistics.median(times):.3f} s (runs: {', '.join(f'{t:.3f}' for t in times)})"
    )
    print(f"pending() once migrated: {per_check * 1e6:.1f} us per start")


if __name__ == "__main__":
    main()
