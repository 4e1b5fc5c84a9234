"""Benchmark how git-theta's cost grows with the number of tensors (issue 14, item 4).

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_scaling.py [--add-tensors 20000] [--add-mb 80]
                                       [--params 10000 100000] [--repeat 1]
                                       [--workdir DIR] [--markdown OUT.md] [--keep] [--seed 0]

Two parts, each in scratch repositories with a HOME and global git config of their own:

- **add**: one safetensors file of `--add-tensors` F32 tensors totalling `--add-mb` MB, added
  with `git add` by git-theta and by Git LFS (fresh repository each run, alternating which tool
  goes first). Target: git-theta within 3x of Git LFS.
- **clone, diff, merge** at each `--params` count (tiny F32 tensors of 4 elements): an origin
  repository holds `main` (v1) and branches `ours` and `theirs`, each changing one different
  parameter. Timed: `git clone --no-hardlinks` (local, with checkout: the objects come from the origin's
  store and the checkpoint is smudged), `git theta diff main origin/theirs` in the clone (after an untimed `git theta fetch`
  of both branches' objects), and
  `git merge origin/theirs` on a branch at `origin/ours` (the theta merge driver merges the
  metadata, the result is smudged into the work tree and checked byte for byte). Target: the
  largest count within 12x of the smallest's time when it has 10x the parameters.

Every cell is wall seconds (median, min-max range with --repeat) and the CPU seconds (user +
system) of the command and every process it waited for, which the machine's other load
disturbs less.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402  (a sibling script, not a package)
    CHECKPOINT,
    MB,
    CommandFailed,
    Sandbox,
    Sources,
    command_line,
    load_average,
    logger,  # noqa: E402
    machine_info,
    markdown_table,
    median,
    report_lines,
    require,
    retire,
    runs_note,
    same_file,
    scratch,
    text_table,
    verdict,
    write_markdown,
)

TAG = "bench-scaling"

log = logger(TAG)


ADD_VS_LFS = 3.0  # git-theta's first add of the many-tensor file, at most this x Git LFS's
SCALE_RATIO = 12.0  # 10x the parameters, at most this x the time
PARAM_ELEMS = 4  # elements per tensor in the clone/diff/merge checkpoints: the count is the load


class Sample:
    """One timed command: wall seconds and CPU seconds of it and its waited-for children."""

    def __init__(self, wall: float, cpu: float) -> None:
        self.wall = wall
        self.cpu = cpu


def timed(sandbox: Sandbox, args: Sequence[str], *, cwd: Path) -> Sample:
    subprocess.run(["sync"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    sandbox.run(args, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall, cpu)


# ---- checkpoints -------------------------------------------------------------------------


def write_checkpoint(path: Path, values: np.ndarray, n_tensors: int) -> None:
    """A safetensors file of `n_tensors` F32 tensors, `values` split evenly among them, named
    like a mixture-of-experts model (`layers.L.experts.E.w`)."""
    per = len(values) // n_tensors
    header = {
        f"layers.{i // 64}.experts.{i % 64}.w": {
            "dtype": "F32",
            "shape": [per],
            "data_offsets": [i * per * 4, (i + 1) * per * 4],
        }
        for i in range(n_tensors)
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.write(values.astype("<f4").tobytes())


def versions(root: Path, n: int, seed: int) -> tuple[Path, Path, Path, Path]:
    """v1, ours (one tensor changed), theirs (another one changed), and both changes."""
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal(n * PARAM_ELEMS) * 0.02).astype("<f4")
    ours_at, theirs_at = n // 3, 2 * n // 3
    made = []
    for name, changed in (
        ("v1", ()),
        ("ours", (ours_at,)),
        ("theirs", (theirs_at,)),
        ("both", (ours_at, theirs_at)),
    ):
        values = base.copy()
        for i in changed:
            values[i * PARAM_ELEMS : (i + 1) * PARAM_ELEMS] += 1.0
        path = root / f"{name}-{n}.safetensors"
        write_checkpoint(path, values, n)
        made.append(path)
    return made[0], made[1], made[2], made[3]


# ---- part 1: add -------------------------------------------------------------------------


def measure_add(sandbox: Sandbox, tool: str, checkpoint: Path, run: int) -> Sample:
    repo = sandbox.root / f"add-{tool}-{run}"
    sandbox.run(["git", "init", "-q", str(repo)], cwd=sandbox.root)
    track = ["git", "theta", "track"] if tool == "theta" else ["git", "lfs", "track"]
    sandbox.run([*track, CHECKPOINT], cwd=repo)
    sandbox.run(["git", "add", ".gitattributes"], cwd=repo)
    sandbox.run(["git", "commit", "-q", "-m", "track"], cwd=repo)
    shutil.copyfile(checkpoint, repo / CHECKPOINT)
    time.sleep(1.1)  # never stat-clean to git
    sample = timed(sandbox, ["git", "add", CHECKPOINT], cwd=repo)
    staged = sandbox.run(["git", "diff", "--cached", "--name-only"], cwd=repo).split()
    if staged != [CHECKPOINT]:
        raise CommandFailed(f"{tool}: `git add` staged {staged}")
    retire(repo)
    return sample


# ---- part 2: clone, diff, merge ------------------------------------------------------------


def make_origin(sandbox: Sandbox, n: int, v1: Path, ours: Path, theirs: Path) -> Path:
    origin = sandbox.root / f"origin-{n}"
    sandbox.run(["git", "init", "-q", str(origin)], cwd=sandbox.root)
    sandbox.run(["git", "theta", "track", CHECKPOINT], cwd=origin)
    for branch, version in (("main", v1), ("ours", ours), ("theirs", theirs)):
        if branch != "main":
            sandbox.run(["git", "checkout", "-q", "-b", branch, "main"], cwd=origin)
        shutil.copyfile(version, origin / CHECKPOINT)
        time.sleep(1.1)
        sandbox.run(["git", "add", CHECKPOINT, ".gitattributes"], cwd=origin)
        sandbox.run(["git", "commit", "-q", "-m", branch], cwd=origin)
    sandbox.run(["git", "checkout", "-q", "main"], cwd=origin)
    return origin


def measure_scale(
    sandbox: Sandbox, n: int, origin: Path, v1: Path, both: Path, run: int
) -> dict[str, Sample]:
    clone = sandbox.root / f"clone-{n}-{run}"
    # --no-hardlinks: `retire` truncates the clone's files, which must not be the origin's.
    clone_cmd = ["git", "clone", "-q", "--no-hardlinks", str(origin), str(clone)]
    out = {"clone": timed(sandbox, clone_cmd, cwd=origin)}
    if same_file(clone / CHECKPOINT, v1) is not None:
        raise CommandFailed(f"{n} params: the cloned checkpoint differs from v1")
    # A clone fetches the objects of what it checks out; the other branches' come first.
    sandbox.run(["git", "theta", "fetch", "origin", "origin/ours", "origin/theirs"], cwd=clone)
    out["diff"] = timed(sandbox, ["git", "theta", "diff", "main", "origin/theirs"], cwd=clone)
    shown = sandbox.run(["git", "theta", "diff", "main", "origin/theirs"], cwd=clone)
    if "1 modified" not in shown:
        raise CommandFailed(f"{n} params: `git theta diff` did not find the one change")
    sandbox.run(["git", "checkout", "-q", "-b", "merged", "origin/ours"], cwd=clone)
    out["merge"] = timed(sandbox, ["git", "merge", "-q", "--no-edit", "origin/theirs"], cwd=clone)
    if same_file(clone / CHECKPOINT, both) is not None:
        raise CommandFailed(f"{n} params: the merged checkpoint lacks one side's change")
    retire(clone)
    return out


# ---- report ------------------------------------------------------------------------------


def cell(samples: Sequence[Sample]) -> str:
    walls = [s.wall for s in samples]
    text = f"{median(walls):.2f} s"
    if len(walls) > 1:
        text += f" ({min(walls):.2f}–{max(walls):.2f})"
    return text + f", CPU {median([s.cpu for s in samples]):.2f} s"


def build_rows(
    add: dict[str, list[Sample]],
    scale: dict[int, dict[str, list[Sample]]],
    add_label: str,
) -> list[tuple[str, str, str, str]]:
    rows = [("measurement", "time (wall, CPU)", "ratio", "target")]
    theta, lfs = median([s.wall for s in add["theta"]]), median([s.wall for s in add["lfs"]])
    ratio = theta / lfs
    rows.append(
        (
            f"`git add` {add_label}: git-theta",
            cell(add["theta"]),
            f"{ratio:.2f}x LFS",
            f"≤ {ADD_VS_LFS:g}x: {verdict(ratio <= ADD_VS_LFS)}",
        )
    )
    rows.append((f"`git add` {add_label}: Git LFS", cell(add["lfs"]), "", ""))
    counts = sorted(scale)
    small = counts[0]
    for step in ("clone", "diff", "merge"):
        base = median([s.wall for s in scale[small][step]])
        for n in counts:
            r = median([s.wall for s in scale[n][step]]) / base
            target = ""
            if n != small:
                limit = SCALE_RATIO * n / (10 * small)
                target = f"≤ {limit:g}x: {verdict(r <= limit)}"
            rows.append(
                (
                    f"{step}, {n:,} params",
                    cell(scale[n][step]),
                    f"{r:.2f}x {small:,}" if n != small else "",
                    target,
                )
            )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--add-tensors", type=int, default=20_000)
    ap.add_argument(
        "--add-mb", type=float, default=80.0, help="size of the add checkpoint (10^6 B)"
    )
    ap.add_argument("--params", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def report(args: argparse.Namespace, root: Path, command: str) -> None:
    sandbox = Sandbox(root)
    sources = Sources.snapshot()
    sandbox.run(["git-theta", "install"], cwd=root)
    sandbox.run(["git", "lfs", "install"], cwd=root)
    notes = [f"load average at start: {load_average()}"]

    elems = int(args.add_mb * MB) // 4 // args.add_tensors
    add_file = root / "add.safetensors"
    rng = np.random.default_rng(args.seed)
    write_checkpoint(
        add_file, rng.standard_normal(elems * args.add_tensors) * 0.02, args.add_tensors
    )
    add_label = f"{args.add_tensors:,} tensors, {add_file.stat().st_size / MB:.0f} MB"
    inputs = {n: versions(root, n, args.seed) for n in args.params}
    origins = {n: make_origin(sandbox, n, *inputs[n][:3]) for n in args.params}

    add: dict[str, list[Sample]] = {"theta": [], "lfs": []}
    scale: dict[int, dict[str, list[Sample]]] = {
        n: {"clone": [], "diff": [], "merge": []} for n in args.params
    }
    for run in range(1, args.repeat + 1):
        # Alternate who goes first, so neither always meets the other's leftovers.
        tools = ["theta", "lfs"] if run % 2 else ["lfs", "theta"]
        for tool in tools:
            log(f"run {run}: add, {tool}")
            add[tool].append(measure_add(sandbox, tool, add_file, run))
        for n in args.params if run % 2 else list(reversed(args.params)):
            log(f"run {run}: clone, diff, merge with {n} params")
            v1, _, _, both = inputs[n]
            for step, sample in measure_scale(sandbox, n, origins[n], v1, both, run).items():
                scale[n][step].append(sample)

    rows = build_rows(add, scale, add_label)
    notes.append(f"load average at end: {load_average()}")
    edited = sources.changed(Sources.snapshot())
    if edited:
        notes.append(f"WARNING: git_theta sources changed during the run: {', '.join(edited)}")
    print(text_table(None, rows, sep="  ", rule=None))
    report_lines(notes)
    if args.markdown is not None:
        write_markdown(
            args.markdown,
            title="git-theta scaling benchmark",
            command=command,
            when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            table=markdown_table(rows[0], rows[1:]),
            about=f"{runs_note(args.repeat, alternate=False)} CPU is user + system seconds of "
            "the command and every process it waited for.",
            lines=notes,
            machine=machine_info(sandbox, sources),
            tag=TAG,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line(argv)
    require("git", "git-lfs", tag=TAG)
    with scratch(args.workdir, keep=args.keep, prefix="git-theta-bench-scaling-", tag=TAG) as root:
        report(args, root, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
