"""Benchmark a TIES merge of two fine-tuned checkpoints: git-theta against mergekit-pytorch.

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_merge.py [--size-mib 1024] [--tensors 200] [--density 0.5]
                                     [--mergekit-venv /work/mergekit-venv]
                                     [--mergekit-dtype both] [--repeat 1]
                                     [--workdir DIR] [--markdown OUT.md] [--keep] [--seed 0]

The base is bench_filter.py's synthetic GPT-like checkpoint; the two fine-tuned versions each
add their own small delta to EVERY tensor, so every parameter conflicts and the strategy
merges all of them. Measured side by side, each as one process tree under GNU time:

- `git theta merge-models -o OUT --base V1 -s ties V2 V3`, in a fresh repository (it cleans
  the three files into the object store, merges, and writes OUT);
- `git merge` of two branches (v1 -> v2 ours, v1 -> v3 theirs) in a scratch repository whose
  merge driver resolves with `git -c theta.merge.strategy=ties -c theta.merge.options=...`;
  the merged checkpoint is smudged into the work tree as part of the merge;
- `mergekit-pytorch CONFIG OUT` from mergekit's own virtualenv, with the same TIES settings
  (base v1, weight 1 and the same density for v2 and v3, lambda 1, normalize true), once
  computing in each tensor's stored dtype (mergekit's default) and once with
  `dtype: float32`, git-theta's arithmetic (its output is then float32 throughout).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402  (a sibling script, not a package)
    CHECKPOINT,
    GNU_TIME,
    MB,
    MIB,
    CommandFailed,
    Sandbox,
    Sources,
    command_line,
    load_average,
    logger,  # noqa: E402
    machine_info,
    markdown_table,
    median,
    plan_checkpoint,
    report_lines,
    require,
    runs_note,
    same_file,
    scratch,
    spread,
    text_table,
    write_changed,
    write_checkpoint,
    write_markdown,
)

TAG = "bench-merge"
# Targets from issue 5.
SPEEDUP_TARGET = 3.0
RSS_LARGEST_FACTOR = 3
RSS_SLACK_BYTES = 300 * MB
DEFAULT_VENV = Path("/work/mergekit-venv")
MERGEKIT_DTYPES = {"native": None, "float32": "float32"}

log = logger(TAG)


@dataclass
class Run:
    """One timed command: wall seconds and the peak RSS (bytes) of its largest process."""

    seconds: float
    rss: float


def timed(sandbox: Sandbox, args: Sequence[str], *, cwd: Path, label: str) -> Run:
    """Run `args` under GNU time after `sync`; wall time from this process's clock.

    GNU time's %M is the largest max-RSS among the command and the children it waited for
    (getrusage RUSAGE_CHILDREN), so for `git merge` it is the biggest of git, the merge driver
    and the filter process, not their sum.
    """
    out = sandbox.root / f"time-{label}.txt"
    out.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    sandbox.run([GNU_TIME, "-f", "%M", "-o", str(out), *args], cwd=cwd)
    seconds = time.perf_counter() - start
    return Run(seconds, _rss(out))


def _rss(path: Path) -> float:
    """Max RSS in bytes from a GNU time `%M` file (nan when the process never ran)."""
    for _ in range(50):  # git waits for its filter on exit; allow for a slow final write
        if path.exists() and path.read_text().strip():
            break
        time.sleep(0.1)
    else:
        return math.nan
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return max(int(ln) for ln in lines if ln.isdigit()) * 1024


# ---- inputs -----------------------------------------------------------------------------


def make_versions(root: Path, size: int, n_tensors: int, seed: int) -> tuple[Path, Path, Path]:
    """v1 (the base) and v2, v3: v1 plus an independent small delta on every tensor."""
    plans = plan_checkpoint(size, n_tensors)
    v1, v2, v3 = (root / f"v{i}.safetensors" for i in (1, 2, 3))
    start = time.perf_counter()
    write_checkpoint(v1, plans, seed)
    write_changed(v1, v2, plans, seed + 1)
    write_changed(v1, v3, plans, seed + 2)
    log(
        f"wrote v1, v2, v3 ({v1.stat().st_size / MIB:.1f} MiB each) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return v1, v2, v3


# ---- git-theta ----------------------------------------------------------------------------


def merge_models(
    sandbox: Sandbox, v1: Path, v2: Path, v3: Path, *, options: str, run: int
) -> tuple[Run, Path]:
    """`git theta merge-models` in a fresh repository (a cold object store each run)."""
    repo = sandbox.root / f"repo-merge-models-{run}"
    shutil.rmtree(repo, ignore_errors=True)
    sandbox.run(["git", "init", "-q", str(repo)], cwd=sandbox.root)
    out = sandbox.root / f"merged-models-{run}.safetensors"
    args = ["git-theta", "merge-models", "-o", str(out), "--base", str(v1), "-s", "ties"]
    for item in options.split():
        args += ["--option", item]
    args += [str(v2), str(v3)]
    log(f"run {run}: git theta merge-models ...")
    result = timed(sandbox, args, cwd=repo, label="merge-models")
    shutil.rmtree(repo, ignore_errors=True)
    return result, out


@dataclass
class GitMergeRepo:
    """A repository with branches `main` (v1 -> v2) and `theirs` (v1 -> v3), ready to merge."""

    path: Path
    driver: str  # the merge driver command `git-theta install` configures
    process: str  # the filter process command


def prepare_git_merge(sandbox: Sandbox, v1: Path, v2: Path, v3: Path) -> GitMergeRepo:
    repo = sandbox.root / "repo-git-merge"
    git = sandbox.run
    git(["git", "init", "-q", str(repo)], cwd=sandbox.root)
    git(["git", "theta", "track", CHECKPOINT], cwd=repo)
    git(["git", "add", ".gitattributes"], cwd=repo)
    git(["git", "commit", "-q", "-m", "track"], cwd=repo)
    work = repo / CHECKPOINT

    def commit(version: Path, message: str) -> None:
        time.sleep(1.1)  # a new mtime second, so the copy can never look stat-clean to git
        shutil.copyfile(version, work)
        git(["git", "add", CHECKPOINT], cwd=repo)
        git(["git", "commit", "-q", "-m", message], cwd=repo)

    log("git merge: committing v1, v3 on `theirs`, v2 on `main` (untimed) ...")
    commit(v1, "base v1")
    git(["git", "checkout", "-q", "-b", "theirs"], cwd=repo)
    commit(v3, "theirs v3")
    git(["git", "checkout", "-q", "main"], cwd=repo)
    commit(v2, "ours v2")
    return GitMergeRepo(repo, _timeable("merge.theta.driver"), _timeable("filter.theta.process"))


def _timeable(key: str) -> str:
    """The command `git theta install` configures for `key`, as one command GNU time can run
    (the configured value is a shell `test -x SCRIPT && exec SCRIPT ... || ...`)."""
    from git_theta.git.config import INSTALLED_CONFIG

    script = shlex.quote(
        shutil.which("git-theta", path=os.path.dirname(sys.executable)) or "git-theta"
    )
    return INSTALLED_CONFIG[key].replace("git-theta", script, 1)


def git_merge(
    sandbox: Sandbox, repo: GitMergeRepo, *, options: str, run: int
) -> tuple[Run, float, float]:
    """Time `git merge theirs` with ties; returns the whole command, and the peak RSS of the
    merge driver and of the filter process alone. Afterwards the repository is put back:
    the merge commit is reset away and the objects it added are deleted, so every run
    merges into the same store."""
    objects = repo.path / ".git" / "theta" / "objects"
    before = {p for p in objects.rglob("*") if p.is_file()}
    driver_rss = sandbox.root / "rss-driver.txt"
    filter_rss = sandbox.root / "rss-filter.txt"
    for f in (driver_rss, filter_rss):
        f.unlink(missing_ok=True)
    wrap = f"{GNU_TIME} -f %M -a -o"
    args = [
        "git",
        "-c", f"merge.theta.driver={wrap} {shlex.quote(str(driver_rss))} {repo.driver}",
        "-c", f"filter.theta.process={wrap} {shlex.quote(str(filter_rss))} {repo.process}",
        "-c", "theta.merge.strategy=ties",
        "-c", f"theta.merge.options={options}",
        "merge", "-q", "--no-edit", "theirs",
    ]  # fmt: skip
    log(f"run {run}: git merge ...")
    result = timed(sandbox, args, cwd=repo.path, label="git-merge")
    parents = sandbox.run(["git", "rev-list", "--parents", "-n", "1", "HEAD"], cwd=repo.path)
    if len(parents.split()) != 3:
        raise CommandFailed(f"`git merge` made no merge commit: {parents.strip()}")
    status = sandbox.run(["git", "status", "--porcelain"], cwd=repo.path).strip()
    if status:
        raise CommandFailed(f"`git merge` left the work tree dirty: {status!r}")
    merged = sandbox.root / f"merged-git-{run}.safetensors"
    shutil.copyfile(repo.path / CHECKPOINT, merged)
    driver, process = _rss(driver_rss), _rss(filter_rss)
    sandbox.run(["git", "reset", "-q", "--hard", "HEAD~1"], cwd=repo.path)
    for p in {p for p in objects.rglob("*") if p.is_file()} - before:
        p.unlink()
    return result, driver, process


# ---- mergekit ---------------------------------------------------------------------------


def mergekit_config(v1: Path, v2: Path, v3: Path, density: float, dtype: str | None) -> str:
    """The mergekit-pytorch YAML for git-theta's `ties` with `density`, weights 1, lambda 1."""
    lines = [
        "merge_method: ties",
        f"base_model: {v1}",
        "models:",
    ]
    for v in (v2, v3):
        lines += [f"  - model: {v}", f"    parameters: {{weight: 1.0, density: {density}}}"]
    lines += ["parameters: {lambda: 1.0, normalize: true}"]
    if dtype is not None:
        lines.append(f"dtype: {dtype}")
    return "\n".join(lines) + "\n"


def mergekit(
    sandbox: Sandbox,
    venv: Path,
    v1: Path,
    v2: Path,
    v3: Path,
    *,
    density: float,
    dtype: str,
    run: int,
) -> Run:
    config = sandbox.root / f"mergekit-{dtype}.yml"
    config.write_text(mergekit_config(v1, v2, v3, density, MERGEKIT_DTYPES[dtype]))
    out = sandbox.root / f"mergekit-out-{dtype}-{run}"
    shutil.rmtree(out, ignore_errors=True)
    log(f"run {run}: mergekit-pytorch ({dtype}) ...")
    result = timed(
        sandbox,
        [str(venv / "bin" / "mergekit-pytorch"), str(config), str(out), "--quiet"],
        cwd=sandbox.root,
        label=f"mergekit-{dtype}",
    )
    written = sorted(out.glob("*.safetensors"))
    if not written:
        raise CommandFailed(f"mergekit-pytorch wrote no safetensors file into {out}")
    shutil.rmtree(out, ignore_errors=True)
    return result


# ---- report -----------------------------------------------------------------------------


def _cell(values: Sequence[float], unit: str) -> str:
    fmt = (lambda x: f"{x:.1f}") if unit == "s" else (lambda x: f"{x / MIB:.0f}")
    return spread(values, fmt, unit)


HEADERS = ("command", "wall time", "peak RSS", "mergekit ÷ this (time)", "target")


def build_rows(
    ours: dict[str, list[Run]],
    extra_rss: dict[str, list[float]],
    kit: dict[str, list[Run]],
    *,
    largest: int,
    options: str,
) -> list[tuple[str, ...]]:
    rss_limit = RSS_LARGEST_FACTOR * largest + RSS_SLACK_BYTES
    fastest_kit = min(
        (median([r.seconds for r in runs]) for runs in kit.values()), default=math.nan
    )
    kit_name = min(kit, key=lambda k: median([r.seconds for r in kit[k]])) if kit else ""
    labels = {
        "merge-models": f"`git theta merge-models -o OUT --base v1 -s ties v2 v3` ({options})",
        "git-merge": f"`git merge` (merge driver: ties, {options}; smudges the result)",
    }
    rows: list[tuple[str, ...]] = []
    for key, runs in ours.items():
        seconds = median([r.seconds for r in runs])
        rss = median([r.rss for r in runs])
        ratio = fastest_kit / seconds if kit else math.nan
        verdicts = []
        if not math.isnan(ratio):
            verdicts.append(
                f"≥{SPEEDUP_TARGET:g}x faster than mergekit ({kit_name}): "
                f"{'**met**' if ratio >= SPEEDUP_TARGET else '**NOT met**'}"
            )
        if not math.isnan(rss):
            verdicts.append(
                f"RSS ≤ {RSS_LARGEST_FACTOR}×largest + 300 MB = {rss_limit / MIB:.0f} MiB: "
                f"{'**met**' if rss <= rss_limit else '**NOT met**'}"
            )
        rows.append(
            (
                labels[key],
                _cell([r.seconds for r in runs], "s"),
                _cell([r.rss for r in runs], "MiB"),
                "—" if math.isnan(ratio) else f"{ratio:.2f}x",
                "; ".join(verdicts),
            )
        )
    for key, values in extra_rss.items():
        rows.append((f"  of which {key}", "", _cell(values, "MiB"), "", ""))
    for key, runs in kit.items():
        what = "stored dtypes (default)" if key == "native" else "`dtype: float32`"
        rows.append(
            (
                f"`mergekit-pytorch` ties, {what}",
                _cell([r.seconds for r in runs], "s"),
                _cell([r.rss for r in runs], "MiB"),
                "1.00x" if key == kit_name else "",
                "",
            )
        )
    rows.append(("largest tensor", "", f"{largest / MIB:.1f} MiB", "", ""))
    return rows


# ---- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=float, default=1024, help="checkpoint size (default 1024)")
    ap.add_argument("--tensors", type=int, default=200, help="tensor count (default 200)")
    ap.add_argument("--density", type=float, default=0.5, help="TIES density (default 0.5)")
    ap.add_argument(
        "--mergekit-venv",
        type=Path,
        default=DEFAULT_VENV,
        help=f"virtualenv with mergekit 0.1.5 (default {DEFAULT_VENV})",
    )
    ap.add_argument(
        "--mergekit-dtype",
        choices=("native", "float32", "both", "none"),
        default="both",
        help="which mergekit runs (default both)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per command; medians shown")
    ap.add_argument("--workdir", type=Path, help="parent of the scratch dir (default: TMPDIR)")
    ap.add_argument("--markdown", type=Path, help="also write the results as Markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = ap.parse_args(argv)
    if args.size_mib <= 0 or args.tensors < 6 or args.repeat < 1:
        ap.error("need --size-mib > 0, --tensors >= 6 and --repeat >= 1")
    if not 0 < args.density <= 1:
        ap.error("need 0 < --density <= 1")
    return args


def report(args: argparse.Namespace, root: Path, command: str) -> None:
    sandbox = Sandbox(root)
    sources = Sources.snapshot()
    sandbox.run(["git-theta", "install"], cwd=root)
    options = f"density={args.density} lambda=1.0"
    kit_dtypes = {"both": ["native", "float32"], "none": []}.get(
        args.mergekit_dtype, [args.mergekit_dtype]
    )
    venv = args.mergekit_venv
    notes: list[str] = [f"load average at start: {load_average()}"]
    if kit_dtypes and not (venv / "bin" / "mergekit-pytorch").exists():
        notes.append(f"no mergekit-pytorch in {venv}: mergekit not measured")
        kit_dtypes = []

    plans = plan_checkpoint(int(args.size_mib * MIB), args.tensors)
    largest = max(p.nbytes for p in plans)
    v1, v2, v3 = make_versions(root, int(args.size_mib * MIB), args.tensors, args.seed)
    repo = prepare_git_merge(sandbox, v1, v2, v3)

    ours: dict[str, list[Run]] = {"merge-models": [], "git-merge": []}
    extra: dict[str, list[float]] = {"merge driver": [], "filter process (smudge)": []}
    kit: dict[str, list[Run]] = {d: [] for d in kit_dtypes}
    for run in range(1, args.repeat + 1):
        # Alternate who goes first, so neither always inherits the other's page cache state.
        steps = ["merge-models", "git-merge", *kit_dtypes]
        for step in steps if run % 2 else list(reversed(steps)):
            if step == "merge-models":
                result, out = merge_models(sandbox, v1, v2, v3, options=options, run=run)
                ours["merge-models"].append(result)
            elif step == "git-merge":
                result, driver, process = git_merge(sandbox, repo, options=options, run=run)
                ours["git-merge"].append(result)
                extra["merge driver"].append(driver)
                extra["filter process (smudge)"].append(process)
            else:
                kit[step].append(
                    mergekit(sandbox, venv, v1, v2, v3, density=args.density, dtype=step, run=run)
                )
        a, b = root / f"merged-models-{run}.safetensors", root / f"merged-git-{run}.safetensors"
        diff = same_file(a, b)
        if diff is not None:
            raise SystemExit(f"bench-merge: merge-models and git merge differ at byte {diff}")
        if same_file(a, v2) is None:
            raise SystemExit("bench-merge: the merged checkpoint equals v2: nothing was merged")
        for p in (a, b):
            p.unlink()

    rows = build_rows(ours, extra, kit, largest=largest, options=options)
    dtypes: dict[str, int] = {}
    for p in plans:
        dtypes[p.dtype] = dtypes.get(p.dtype, 0) + p.nbytes
    summary = [
        f"checkpoint: {v1.stat().st_size / MIB:.1f} MiB, {len(plans)} tensors "
        f"({', '.join(f'{dt} {b / MIB:.0f} MiB' for dt, b in dtypes.items())}); every tensor "
        "differs between v1, v2 and v3, so all are conflicts for ties",
        "git merge and merge-models give byte-identical checkpoints (checked every run)",
        f"load average at end: {load_average()}",
    ]
    edited = sources.changed(Sources.snapshot())
    if edited:
        notes.append(
            "WARNING: git_theta sources changed during this run, so the git-theta numbers may "
            f"mix versions: {', '.join(edited)}"
        )
    print(text_table(HEADERS, rows, plain=True))
    report_lines(summary + notes)
    if args.markdown is not None:
        write_markdown(
            args.markdown,
            title="git-theta vs mergekit: TIES merge benchmark",
            command=command,
            table=markdown_table(HEADERS, rows),
            about=f"{runs_note(args.repeat, alternate=False)} Warm page cache (the inputs were "
            "just written).",
            lines=summary + notes,
            machine=machine_info(sandbox, sources),
            tag=TAG,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line(argv)
    require("git", tag=TAG)
    if not os.path.exists(GNU_TIME):
        raise SystemExit(f"bench-merge: needs GNU time at {GNU_TIME} for peak RSS")
    with scratch(args.workdir, keep=args.keep, prefix="git-theta-bench-merge-", tag=TAG) as root:
        report(args, root, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
