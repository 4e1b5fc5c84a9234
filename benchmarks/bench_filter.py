"""Benchmark git-theta's filter against Git LFS on a synthetic safetensors checkpoint.

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_filter.py [--size-gib 1.0] [--tensors 200] [--changed-fraction 0.01]
                                      [--workdir DIR] [--markdown OUT.md] [--repeat 1] [--keep]

Both tools run side by side in scratch repositories under a temporary directory, with a HOME
and global git config of their own: the machine's git configuration is read by nothing and
written by nothing.
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
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402  (a sibling script, not a package)
    CHECKPOINT,
    DTYPE_SIZES,
    GIB,
    GNU_TIME,
    MB,
    MIB,
    CommandFailed,
    Sandbox,
    Sources,
    choose_changed,
    command_line,
    interleaved,
    log,
    machine_info,
    markdown_table,
    plan_checkpoint,
    read_hash_reference,
    read_usage,
    report_lines,
    require,
    retire,
    runs_note,
    same_file,
    scratch,
    spread,
    text_table,
    tree_bytes,
    verdict,
    write_changed,
    write_checkpoint,
    write_markdown,
)
from harness import median as median_of  # noqa: E402

NULL_FILTER = "cat >/dev/null; echo null"
DRAIN_FILTER = Path(__file__).with_name("drain_filter.py")
# Targets from the issue.
FIRST_ADD_SPEEDUP = 3.0
CHANGED_ADD_SPEEDUP = 8.0
STORED_VS_CHANGED = 1.1
STATUS_VS_REFERENCE = 1.5
RSS_SLACK_BYTES = 200 * MB


# ---- the two tools ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    key: str
    label: str
    filter: str  # the filter driver name in .gitattributes
    install: tuple[str, ...]
    track: tuple[str, ...]


THETA = Tool(
    "theta",
    "git-theta",
    "theta",
    ("git-theta", "install"),
    ("git", "theta", "track", CHECKPOINT),
)
LFS = Tool("lfs", "Git LFS", "lfs", ("git", "lfs", "install"), ("git", "lfs", "track", CHECKPOINT))


@dataclass
class Result:
    """One run of one tool: seconds, bytes (RSS included), and anything odd seen on the way."""

    add_first: float = math.nan
    add_changed: float = math.nan
    status_touch: float = math.nan
    reference: float = math.nan  # read+hash of the same file, just before the status
    pipe_floor: float = math.nan  # the same status with a clean filter that discards its input
    checkout: float = math.nan
    store_growth: float = math.nan
    git_total: float = math.nan
    rss_add_first: float = math.nan
    rss_checkout: float = math.nan
    cpu_add_first: float = math.nan  # user+sys seconds of the filter process
    cpu_checkout: float = math.nan
    notes: list[str] = field(default_factory=list)


def measure(sandbox: Sandbox, tool: Tool, v1: Path, v2: Path, *, run: int) -> Result:
    """Track, add v1, add v2, status after touch, checkout v1, in a fresh repository."""
    res = Result()
    repo = sandbox.root / f"repo-{tool.key}-{run}"
    git = sandbox.run
    git(["git", "init", "-q", str(repo)], cwd=sandbox.root)
    git(list(tool.track), cwd=repo)
    git(["git", "add", ".gitattributes"], cwd=repo)
    git(["git", "commit", "-q", "-m", "track checkpoint"], cwd=repo)

    process_key = f"filter.{tool.filter}.process"
    installed = git(["git", "config", "--get", process_key], cwd=repo).strip()
    rss_file = sandbox.root / f"rss-{tool.key}.txt"
    wrapped = os.path.exists(GNU_TIME)
    if not wrapped:
        res.notes.append(f"{GNU_TIME} not found: peak RSS not measured")

    def timed_git(*args: str) -> tuple[float, tuple[float, float]]:
        # The same wrapper around both tools' filter, on every timed command, so the
        # fork/exec of GNU time costs both sides equally.
        prefix = (
            [
                "-c",
                f"{process_key}={GNU_TIME} -f '%M %U %S' -o {shlex.quote(str(rss_file))} "
                f"{installed}",
            ]
            if wrapped
            else []
        )
        rss_file.unlink(missing_ok=True)
        seconds, _ = sandbox.timed(["git", *prefix, *args], cwd=repo)
        return seconds, read_usage(rss_file) if wrapped else (math.nan, math.nan)

    work = repo / CHECKPOINT
    log(f"{tool.label} (run {run}): first add ...")
    shutil.copyfile(v1, work)
    res.add_first, (res.rss_add_first, res.cpu_add_first) = timed_git("add", CHECKPOINT)
    git(["git", "commit", "-q", "-m", "v1"], cwd=repo)

    log(f"{tool.label} (run {run}): add after change ...")
    # git-theta's store and Git LFS's: each tool writes only its own.
    stores = [repo / ".git" / name / "objects" for name in ("theta", "lfs")]
    before = sum(tree_bytes(p) for p in stores if p.exists())
    time.sleep(1.1)  # a new mtime second, so the copy can never look stat-clean to git
    shutil.copyfile(v2, work)
    res.add_changed, _ = timed_git("add", CHECKPOINT)
    git(["git", "commit", "-q", "-m", "v2"], cwd=repo)  # fails loudly if the add staged nothing
    res.store_growth = sum(tree_bytes(p) for p in stores if p.exists()) - before
    res.git_total = tree_bytes(repo / ".git")

    log(f"{tool.label} (run {run}): status after touch ...")
    time.sleep(1.1)
    os.utime(work)
    subprocess.run(["sync"], check=True)
    res.reference = read_hash_reference(work)
    res.status_touch, _ = timed_git("status", "--porcelain")
    dirty = git(["git", "status", "--porcelain"], cwd=repo).strip()
    if dirty:
        res.notes.append(f"`git status` after touch reports changes: {dirty!r}")

    log(f"{tool.label} (run {run}): checkout of v1 ...")
    res.checkout, (res.rss_checkout, res.cpu_checkout) = timed_git(
        "checkout", "-q", "HEAD~1", "--", CHECKPOINT
    )
    diff = same_file(work, v1)
    if diff is not None:
        raise SystemExit(
            f"bench: {tool.label}: after `git checkout HEAD~1 -- {CHECKPOINT}` the file differs "
            f"from version 1 at byte {diff} ({work.stat().st_size} vs {v1.stat().st_size} bytes)"
        )
    log(
        f"{tool.label} (run {run}): add {res.add_first:.2f} s, add after change "
        f"{res.add_changed:.2f} s, status {res.status_touch:.2f} s, checkout {res.checkout:.2f} s"
    )
    return res


def _floor_status(sandbox: Sandbox, v2: Path, name: str, config: dict[str, str]) -> float:
    """Seconds of `git status` after `touch` in a repository whose checkpoint goes through the
    stand-in filter that `config` defines (as `filter=stand-in`). The filter also cleaned the
    committed version, so status finds the file unchanged and runs it once."""
    repo = sandbox.root / name
    sandbox.run(["git", "init", "-q", str(repo)], cwd=sandbox.root)
    (repo / ".gitattributes").write_text(f"{CHECKPOINT} filter=stand-in\n")
    for key, value in config.items():
        sandbox.run(["git", "config", f"filter.stand-in.{key}", value], cwd=repo)
    work = repo / CHECKPOINT
    shutil.copyfile(v2, work)
    sandbox.run(["git", "add", "."], cwd=repo)
    sandbox.run(["git", "commit", "-q", "-m", "stand-in"], cwd=repo)
    time.sleep(1.1)
    os.utime(work)
    subprocess.run(["sync"], check=True)
    seconds, dirty = sandbox.timed(["git", "status", "--porcelain"], cwd=repo)
    if dirty.strip():
        raise CommandFailed(f"the stand-in filter left {repo} dirty: {dirty!r}")
    return seconds


def measure_pipe_floor(sandbox: Sandbox, v2: Path, *, run: int) -> tuple[float, float]:
    """Seconds of `git status` after `touch` with two clean filters that only discard their
    input: a one-shot `cat` (git maps the file and feeds it to the command) and a long-running
    filter that drains git's pipe as git-theta's is fed (`required`, so git streams from the
    file). What git alone spends reading the file and piping it: a floor for any filter."""
    one_shot = _floor_status(sandbox, v2, f"repo-null-{run}", {"clean": NULL_FILTER})
    drain = shlex.join([sys.executable, str(DRAIN_FILTER), "splice"])
    process = _floor_status(
        sandbox, v2, f"repo-drain-{run}", {"process": drain, "required": "true"}
    )
    return one_shot, process


# ---- report -----------------------------------------------------------------------------


def median(results: Sequence[Result], attr: str) -> float:
    return median_of([getattr(r, attr) for r in results])


def _num(x: float, unit: str) -> str:
    return f"{x:.2f}" if unit == "s" else f"{x / MIB:.1f}"


def _cell(results: Sequence[Result], attr: str, unit: str) -> str:
    """The median, with the range in brackets when there are several runs."""
    return spread([getattr(r, attr) for r in results], lambda x: _num(x, unit), unit)


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / 1024:.1f} KiB"


def _met(ok: bool) -> str:
    return verdict(ok, bold=True)


def _ratio(lfs: float, ours: float) -> str:
    if math.isnan(lfs) or math.isnan(ours) or ours <= 0:
        return "—"
    return f"{lfs / ours:.2f}x"


def build_rows(
    ours: Sequence[Result], lfs: Sequence[Result], *, changed_bytes: int, largest: int
) -> list[tuple[str, str, str, str, str]]:
    """Table rows from the runs' medians; every verdict is computed from the medians shown."""
    rss_limit = 2 * largest + RSS_SLACK_BYTES

    def both(label: str, attr: str, unit: str, target: str = "") -> tuple[str, str, str, str, str]:
        ratio = _ratio(median(lfs, attr), median(ours, attr))
        return (label, _cell(ours, attr, unit), _cell(lfs, attr, unit), ratio, target)

    def speedup(attr: str, goal: float) -> str:
        ratio = median(lfs, attr) / median(ours, attr)
        return f"≥{goal:g}x faster than LFS: {_met(ratio >= goal)}"

    def rss_target(attr: str) -> str:
        value = median(ours, attr)
        verdict = "n/a" if math.isnan(value) else _met(value <= rss_limit)
        return f"≤ 2×largest + 200 MB = {rss_limit / MIB:.0f} MiB: {verdict}"

    stored = median(ours, "store_growth") / changed_bytes
    status = median(ours, "status_touch") / median(ours, "reference")
    floor = median(ours, "process_floor") / median(ours, "reference")
    fixed = _mib(changed_bytes)
    return [
        both("first `git add`", "add_first", "s", speedup("add_first", FIRST_ADD_SPEEDUP)),
        both(
            "`git add` after 1% of tensors changed",
            "add_changed",
            "s",
            speedup("add_changed", CHANGED_ADD_SPEEDUP),
        ),
        both(
            "store growth of commit 2 (object store)",
            "store_growth",
            "MiB",
            f"≤{STORED_VS_CHANGED:g}x changed raw bytes (is {stored:.2f}x): "
            f"{_met(stored <= STORED_VS_CHANGED)}",
        ),
        ("changed tensors' raw bytes", fixed, fixed, "—", ""),
        both("total `.git` size after both commits", "git_total", "MiB"),
        both(
            "`git status` after `touch`",
            "status_touch",
            "s",
            f"≤{STATUS_VS_REFERENCE:g}x read+hash reference (is {status:.2f}x; a filter that "
            f"only drains git's pipe is {floor:.2f}x): {_met(status <= STATUS_VS_REFERENCE)}",
        ),
        (
            "read+hash reference (xxh3_128, 16 MiB chunks)",
            _cell(ours, "reference", "s"),
            "—",
            "—",
            "",
        ),
        (
            "floor: same status, long-running filter that only drains git's pipe",
            _cell(ours, "process_floor", "s"),
            "—",
            "—",
            "",
        ),
        (
            "floor: same status, one-shot clean filter `cat >/dev/null`",
            _cell(ours, "pipe_floor", "s"),
            "—",
            "—",
            "",
        ),
        both(
            "`git checkout HEAD~1 -- model.safetensors` (verified)",
            "checkout",
            "s",
            "no slower than LFS: " + _met(median(ours, "checkout") <= median(lfs, "checkout")),
        ),
        both(
            "peak RSS of filter process, first add",
            "rss_add_first",
            "MiB",
            rss_target("rss_add_first"),
        ),
        both(
            "peak RSS of filter process, checkout",
            "rss_checkout",
            "MiB",
            rss_target("rss_checkout"),
        ),
        ("largest tensor", _mib(largest), _mib(largest), "—", ""),
        # CPU seconds (user+sys, GNU time) of the filter process alone: less sensitive to
        # other load than wall time, and what a 2-core machine shares with git's own work.
        both("CPU of filter process, first add", "cpu_add_first", "s"),
        both("CPU of filter process, checkout", "cpu_checkout", "s"),
    ]


HEADERS = ("measurement", "git-theta", "Git LFS", "ratio (LFS ÷ git-theta)", "target")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=1.0, help="checkpoint size (default 1.0)")
    ap.add_argument("--tensors", type=int, default=200, help="tensor count (default 200)")
    ap.add_argument(
        "--changed-fraction",
        type=float,
        default=0.01,
        help="fraction of tensors changed in version 2, at least 2 tensors (default 0.01)",
    )
    ap.add_argument("--workdir", type=Path, help="parent of the scratch dir (default: TMPDIR)")
    ap.add_argument("--markdown", type=Path, help="also write the results as Markdown here")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; medians shown")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = ap.parse_args(argv)
    if args.size_gib <= 0 or args.tensors < 6 or args.repeat < 1:
        ap.error("need --size-gib > 0, --tensors >= 6 and --repeat >= 1")
    if not 0 <= args.changed_fraction <= 1:
        ap.error("need 0 <= --changed-fraction <= 1")
    return args


def report(args: argparse.Namespace, root: Path, command: str) -> None:
    sandbox = Sandbox(root)
    sources = Sources.snapshot()
    plans = plan_checkpoint(int(args.size_gib * GIB), args.tensors)
    changed = choose_changed(plans, args.changed_fraction)
    v1, v2 = root / "v1.safetensors", root / "v2.safetensors"
    start = time.perf_counter()
    write_checkpoint(v1, plans, args.seed)
    write_changed(v1, v2, changed, args.seed)
    log(
        f"wrote {v1.stat().st_size / MIB:.1f} MiB, {len(plans)} tensors, "
        f"{len(changed)} changed, in {time.perf_counter() - start:.1f} s"
    )
    for tool in (THETA, LFS):
        sandbox.run(list(tool.install), cwd=root)

    runs: dict[str, list[Result]] = {THETA.key: [], LFS.key: []}
    # The tools take turns going first, so neither always inherits the other's leftovers.
    for run, tool in interleaved(args.repeat, (THETA, LFS)):
        runs[tool.key].append(measure(sandbox, tool, v1, v2, run=run))
        if not args.keep:
            retire(root / f"repo-{tool.key}-{run}")
        if len(runs[THETA.key]) == len(runs[LFS.key]):  # both ran: the floors of this run
            last = runs[THETA.key][-1]
            last.pipe_floor, last.process_floor = measure_pipe_floor(sandbox, v2, run=run)
            if not args.keep:
                for name in (f"repo-null-{run}", f"repo-drain-{run}"):
                    retire(root / name)
    ours, lfs = runs[THETA.key], runs[LFS.key]

    largest = max(p.nbytes for p in plans)
    changed_bytes = sum(p.nbytes for p in changed)
    rows = build_rows(ours, lfs, changed_bytes=changed_bytes, largest=largest)
    dtypes = {dt: sum(p.nbytes for p in plans if p.dtype == dt) for dt in DTYPE_SIZES}
    summary = [
        f"checkpoint: {v1.stat().st_size / MIB:.1f} MiB, {len(plans)} tensors "
        f"({', '.join(f'{dt} {b / MIB:.0f} MiB' for dt, b in dtypes.items())}); "
        f"largest {max(plans, key=lambda p: p.nbytes).name} {_mib(largest)}",
        f"changed in version 2: {len(changed)} tensors, "
        + ", ".join(f"{p.name} ({p.dtype} {list(p.shape)}, {_mib(p.nbytes)})" for p in changed),
    ]
    notes = [f"{t.label}: {n}" for t in (THETA, LFS) for r in runs[t.key] for n in r.notes]
    edited = sources.changed(Sources.snapshot())
    if edited:
        notes.append(
            "WARNING: git_theta sources changed during this run, so the git-theta numbers may "
            f"mix versions (fingerprint is from the start): {', '.join(edited)}"
        )
    print(text_table(HEADERS, rows, plain=True))
    report_lines(summary + notes)
    if args.markdown is not None:
        write_markdown(
            args.markdown,
            title="git-theta vs Git LFS: filter benchmark",
            command=command,
            table=markdown_table(HEADERS, rows),
            about="Ratio is Git LFS ÷ git-theta: above 1 means git-theta is faster or smaller. "
            f"{runs_note(args.repeat)} The page cache is warm (both versions were just written).",
            lines=summary + notes,
            machine=machine_info(sandbox, sources),
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line(argv)
    require("git", "git-lfs")
    with scratch(args.workdir, keep=args.keep, prefix="git-theta-bench-") as root:
        report(args, root, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
