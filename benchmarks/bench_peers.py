"""git-theta vs Git LFS vs DVC on the 1 GiB benchmark checkpoint, side by side, interleaved;
plus the memory scenarios of the checkout targets (`ulimit`, `sharded`, slow: behind their
own subcommands).

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_peers.py compare [--size-gib 1.0] [--repeat 3] [--markdown OUT.md]
    python benchmarks/bench_peers.py ulimit [--size-gib 4] [--limit-kib 2097152]
    python benchmarks/bench_peers.py sharded [--size-gib 8] [--shards 4]

Every tool runs in scratch repositories under a temporary directory with a HOME and global git
config of their own. Each repetition runs every tool once, the order rotated; cells show the
median with the min–max range.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filter import measure_pipe_floor  # noqa: E402  (sibling scripts, not a package)
from harness import (  # noqa: E402
    CHECKPOINT,
    GIB,
    MB,
    MIB,
    Sandbox,
    Sources,
    TensorPlan,
    choose_changed,
    command_line,
    load_average,
    log,
    machine_info,
    markdown_table,
    plan_checkpoint,
    retire,
    rotated,
    same_file,
    scratch,
    spread,
    write_changed,
    write_checkpoint,
)
from harness import median as median_of  # noqa: E402
from peers import TRACE_ENV, Peer, ensure_dvc, has_direct_checkout, theta_peers, timed_tree  # noqa: E402
from peers_memory import add_memory_commands  # noqa: E402

# Targets from issue 15.
FIRST_ADD = {"lfs": 4.0, "dvc": 2.5}
CHANGED_ADD = {"lfs": 10.0, "dvc": 6.0}
CHECKOUT = {"lfs": 3.0, "dvc": 1.0}
STATUS_VS_FLOOR = 1.3
RSS_SLACK = 200 * MB
DEFAULT_DVC_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "git-theta-bench/dvc-venv"
)


@dataclass
class Result:
    add_first: float = math.nan
    add_tensors: float = math.nan
    add_bytes: float = math.nan
    status: float = math.nan
    checkout: float = math.nan
    checkout_back: float = math.nan
    checkout_cold: float = math.nan
    rss_checkout: float = math.nan
    cpu_checkout: float = math.nan
    rss_add_first: float = math.nan
    floor: float = math.nan  # drain_filter's `git status`, same repetition (shared by all)
    notes: list[str] = field(default_factory=list)


class Versions:
    """v1; v2 with 2 of 200 tensors changed (1% by count, the issue's and bench_filter's
    sense); v3 = v2 with ~1% of the bytes changed."""

    def __init__(self, root: Path, size_gib: float, tensors: int, seed: int) -> None:
        self.plans = plan_checkpoint(int(size_gib * GIB), tensors)
        self.by_count = choose_changed(self.plans, 0.01)
        self.by_bytes = _about_bytes(self.plans, 0.01, exclude=self.by_count)
        self.v1, self.v2, self.v3 = (root / f"v{k}.safetensors" for k in (1, 2, 3))
        start = time.perf_counter()
        write_checkpoint(self.v1, self.plans, seed)
        write_changed(self.v1, self.v2, self.by_count, seed)
        write_changed(self.v2, self.v3, self.by_bytes, seed + 1)
        log(
            f"wrote 3 versions of {_mib(self.v1.stat().st_size)} in {time.perf_counter() - start:.1f} s"
        )


def _about_bytes(
    plans: Sequence[TensorPlan], fraction: float, exclude: Sequence[TensorPlan]
) -> list[TensorPlan]:
    """The one or two tensors (not in `exclude`) whose sizes add up closest to `fraction` of
    the checkpoint's bytes: a fine-tune of a few whole matrices, not of many biases."""
    target = fraction * sum(p.nbytes for p in plans)
    free = [p for p in plans if p not in exclude]
    options = [[p] for p in free] + [[a, b] for i, a in enumerate(free) for b in free[i + 1 :]]
    best = min(options, key=lambda ps: (abs(sum(p.nbytes for p in ps) - target), len(ps)))
    return sorted(best, key=lambda p: p.offset)


def _copy_in(src: Path, dst: Path) -> None:
    time.sleep(1.1)  # a new mtime second, so the copy can never look stat-clean to git
    shutil.copyfile(src, dst)


def measure(sandbox: Sandbox, peer: Peer, ver: Versions, *, run: int) -> Result:
    """Track; add + commit v1, v2, v3; checkout of v1 and back to v3, verified; status after
    touch."""
    res = Result()
    repo = sandbox.root / f"repo-{peer.key}-{run}"
    peer.setup(sandbox, repo, [CHECKPOINT])
    work = repo / CHECKPOINT

    trace = sandbox.root / f"trace-{peer.key}-{run}.txt"

    def step(what: str, script: str) -> tuple[float, float, float]:
        log(f"{peer.label} (run {run}): {what} ...")
        tr = timed_tree(sandbox, script, cwd=repo, env={TRACE_ENV: str(trace)})
        return tr.seconds, tr.peak_rss, tr.cpu

    shutil.copyfile(ver.v1, work)
    res.add_first, res.rss_add_first, _ = step("first add", peer.add_commit([CHECKPOINT], "v1"))
    _copy_in(ver.v2, work)
    res.add_tensors, _, _ = step("add, 2 tensors changed", peer.add_commit([CHECKPOINT], "v2"))
    _copy_in(ver.v3, work)
    res.add_bytes, _, _ = step("add, 1% of bytes changed", peer.add_commit([CHECKPOINT], "v3"))

    def checkout(what: str, rev: str, expected: Path) -> tuple[float, float, float]:
        """A timed checkout, verified byte for byte, its trace (git-theta) in the notes."""
        trace.unlink(missing_ok=True)
        measured = step(what, peer.checkout(rev))
        if trace.exists():  # git-theta with the direct path says which path wrote the file
            paths = sorted(set(trace.read_text().split("\n")) - {""})
            res.notes.append(f"{what} trace: {'; '.join(paths)}")
        diff = same_file(work, expected)
        if diff is not None:
            raise SystemExit(f"bench: {peer.label}: after {what} the file differs at byte {diff}")
        dirty = sandbox.run(["git", "status", "--porcelain"], cwd=repo).strip()
        if dirty:
            res.notes.append(f"`git status` after {what} reports {dirty!r}")
        return measured

    res.checkout, res.rss_checkout, res.cpu_checkout = checkout("checkout v1", "HEAD~2", ver.v1)
    # Switching back: the file being replaced is now one the tool itself wrote (git-theta
    # rewrites it where the versions differ: git_theta/kept.py).
    res.checkout_back, _, _ = checkout("checkout back to v3", "-", ver.v3)
    # The same checkout with nothing to reuse, as after a clone or a layout change: git-theta
    # decodes every tensor (its kept copies, git_theta/kept.py and cleaned.py, are removed).
    if peer.kind == "theta":
        shutil.rmtree(repo / ".git" / "theta" / "checkout" / "kept", ignore_errors=True)
    res.checkout_cold, _, _ = checkout("checkout v1, nothing kept", "HEAD~2", ver.v1)
    # After the checkouts: run before them, Git's racy-clean rule (a file touched in the
    # second its index was written is re-read by the next command) made every Git-based
    # tool's checkout start by reading the whole 1 GiB file again (measured 0.38 s).
    time.sleep(1.1)
    os.utime(work)
    res.status, _, _ = step("status after touch", peer.status())
    if peer.kind != "dvc":
        dirty = sandbox.run(["git", "status", "--porcelain"], cwd=repo).strip()
        if dirty:
            res.notes.append(f"`git status` after touch reports {dirty!r}")
    log(
        f"{peer.label} (run {run}): add {res.add_first:.2f} / {res.add_tensors:.2f} / "
        f"{res.add_bytes:.2f} s, status {res.status:.2f} s, checkout {res.checkout:.2f} s, "
        f"back {res.checkout_back:.2f} s, cold {res.checkout_cold:.2f} s, "
        f"{res.rss_checkout / MIB:.0f} MiB"
    )
    return res


# ---- report -----------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / 1024:.1f} KiB"


def _fmt(unit: str) -> Callable[[float], str]:
    return (lambda x: f"{x:.2f}") if unit == "s" else (lambda x: f"{x / MIB:.0f}")


def _med(results: Sequence[Result], attr: str) -> float:
    return median_of([getattr(r, attr) for r in results])


def _ratio_verdicts(
    runs: dict[str, list[Result]], peers: Sequence[Peer], attr: str, goals: dict[str, float]
) -> str:
    """For each git-theta path: how many times faster than each peer, against the goal."""
    parts = []
    for theta in (p for p in peers if p.kind == "theta"):
        ours = _med(runs[theta.key], attr)
        cells = []
        for other, goal in goals.items():
            if other not in runs:
                continue
            ratio = _med(runs[other], attr) / ours
            mark = "met" if ratio >= goal else "NOT met"
            cells.append(f"{ratio:.2f}x vs {other.upper()} (≥{goal:g}x {mark})")
        parts.append(f"{theta.label}: " + ", ".join(cells))
    return "; ".join(parts)


def build_table(peers: Sequence[Peer], runs: dict[str, list[Result]], ver: Versions) -> str:
    largest = max(p.nbytes for p in ver.plans)
    rss_limit = 2 * largest + RSS_SLACK
    headers = ["measurement", *[p.label for p in peers], "target (issue 15)"]

    def row(label: str, attr: str, unit: str, target: str = "") -> list[str]:
        cells = [spread([getattr(r, attr) for r in runs[p.key]], _fmt(unit), unit) for p in peers]
        return [label, *cells, target]

    def timed(label: str, attr: str, goals: dict[str, float]) -> list[str]:
        """A row of seconds, with how many times faster than each peer against `goals`."""
        return row(label, attr, "s", _ratio_verdicts(runs, peers, attr, goals))

    thetas = [p for p in peers if p.kind == "theta"]
    floor = _med(runs[thetas[0].key], "floor")
    status_target = "; ".join(
        f"{p.label}: {_med(runs[p.key], 'status') / floor:.2f}x floor "
        f"({'met' if _med(runs[p.key], 'status') <= STATUS_VS_FLOOR * floor else 'NOT met'})"
        for p in thetas
    )
    rss_target = "; ".join(
        f"{p.label}: {'met' if _med(runs[p.key], 'rss_checkout') <= rss_limit else 'NOT met'}"
        for p in thetas
    )
    floor_cells = [
        spread([r.floor for r in runs[p.key]], _fmt("s"), "s") if p is thetas[0] else "—"
        for p in peers
    ]
    count_mib, bytes_mib = (_mib(sum(p.nbytes for p in c)) for c in (ver.by_count, ver.by_bytes))
    return markdown_table(
        headers,
        [
            timed("first add + commit", "add_first", FIRST_ADD),
            timed(
                f"add + commit after 2 of {len(ver.plans)} tensors changed ({count_mib})",
                "add_tensors",
                CHANGED_ADD,
            ),
            timed(
                f"add + commit after 1% of bytes changed ({len(ver.by_bytes)} tensors, {bytes_mib})",
                "add_bytes",
                CHANGED_ADD,
            ),
            timed("checkout of the other version (verified)", "checkout", CHECKOUT),
            timed("checkout back to the version it replaced (verified)", "checkout_back", CHECKOUT),
            timed(
                "checkout of the other version, nothing kept (verified)", "checkout_cold", CHECKOUT
            ),
            row(
                "peak RSS of the whole command tree at checkout",
                "rss_checkout",
                "MiB",
                f"≤ 2 × largest tensor + 200 MB = {rss_limit / MIB:.0f} MiB: {rss_target}",
            ),
            row("CPU of the whole command tree at checkout", "cpu_checkout", "s"),
            row("peak RSS of the whole command tree at first add", "rss_add_first", "MiB"),
            row(
                "status after `touch` (`git status`; DVC: `dvc status`)",
                "status",
                "s",
                f"≤ {STATUS_VS_FLOOR:g}x floor: {status_target}",
            ),
            ["floor: same `git status`, `drain_filter.py splice`", *floor_cells, ""],
        ],
    )


def _versions_line(sandbox: Sandbox, dvc: Path) -> str:
    lfs = sandbox.run(["git", "lfs", "version"], cwd=sandbox.root).strip()
    dvc_version = sandbox.run([str(dvc), "--version"], cwd=sandbox.root).strip()
    return f"{lfs}; DVC {dvc_version} ({dvc})"


def compare(args: argparse.Namespace) -> int:
    command = command_line(None)
    dvc = ensure_dvc(args.dvc_venv, args.dvc_spec)
    with scratch(args.workdir, keep=args.keep, prefix="git-theta-peers-") as root:
        sandbox = Sandbox(root)
        sandbox.env.update(DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(root / "dvc-site"))
        sandbox.run(["git-theta", "install"], cwd=root)
        sources = Sources.snapshot()
        direct = has_direct_checkout(sandbox)
        peers = [
            *theta_peers(direct),
            Peer("lfs", "Git LFS", "lfs"),
            Peer("dvc", "DVC", "dvc", dvc=str(dvc)),
        ]
        ver = Versions(root, args.size_gib, args.tensors, args.seed)
        runs: dict[str, list[Result]] = {p.key: [] for p in peers}
        loads = [load_average()]
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        for run, peer in rotated(args.repeat, peers):
            runs[peer.key].append(measure(sandbox, peer, ver, run=run))
            if not args.keep:
                retire(root / f"repo-{peer.key}-{run}")
            if all(len(r) == run for r in runs.values()):  # the repetition is complete
                _one_shot, drain = measure_pipe_floor(sandbox, ver.v3, run=run)
                for results in runs.values():
                    results[-1].floor = drain
                loads.append(load_average())
                log(f"run {run} done; floor {drain:.2f} s; load {loads[-1]}")
        table = build_table(peers, runs, ver)
        notes = [
            f"{started}, {args.label}; {args.repeat} repetition(s), each running every tool once, "
            "order rotated; median (min–max).",
            "load average (1/5/15 min) before and after each repetition: " + " → ".join(loads),
            f"checkpoint: {_mib(ver.v1.stat().st_size)}, {len(ver.plans)} tensors (F32/F16/BF16), "
            f"largest {_mib(max(p.nbytes for p in ver.plans))}; changed by count: "
            + ", ".join(p.name for p in ver.by_count)
            + "; by bytes: "
            + ", ".join(p.name for p in ver.by_bytes),
            "checkout: `git checkout -q HEAD~2` (v3 → v1; DVC: then `dvc checkout -q`), then "
            "`git checkout -q -` back to v3, then `git checkout -q HEAD~2` again with git-theta's "
            "kept copies removed (nothing to reuse), each verified byte-identical; peak RSS sums every "
            "process of the tree (`benchmarks/tree_rss.py`, polled every 10 ms). Status after "
            "touch runs after the checkouts (before them, Git's racy-clean rule made each "
            "Git-based tool's checkout re-read the file first).",
            "git-theta direct checkout path: "
            + (
                "measured (`theta.directCheckoutBytes`)"
                if direct
                else "not available in this git-theta; smudge path only"
            ),
            _versions_line(sandbox, dvc),
            *[f"{p.label}: {n}" for p in peers for r in runs[p.key] for n in r.notes],
        ]
        edited = sources.changed(Sources.snapshot())
        if edited:
            notes.append(f"WARNING: git_theta sources changed during the run: {', '.join(edited)}")
        machine = machine_info(sandbox, sources)
        text = "\n".join(
            [
                f"Command: `{command}`",
                "",
                table,
                "",
                *[f"- {n}" for n in notes],
                "",
                "Machine:",
                "",
                *[f"- {k}: {v}" for k, v in machine],
                "",
            ]
        )
        print(text)
        if args.markdown is not None:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(text)
            log(f"wrote {args.markdown}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workdir", type=Path, help="parent of the scratch dir (default TMPDIR)")
    common.add_argument("--keep", action="store_true", help="keep the scratch directory")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--markdown", type=Path, help="also write the report here")
    sub = ap.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", parents=[common], help="git-theta vs Git LFS vs DVC")
    cmp.add_argument("--size-gib", type=float, default=1.0)
    cmp.add_argument("--tensors", type=int, default=200)
    cmp.add_argument("--repeat", type=int, default=3)
    cmp.add_argument(
        "--dvc-venv",
        type=Path,
        default=DEFAULT_DVC_VENV,
        help=f"virtualenv holding DVC, created if missing (default {DEFAULT_DVC_VENV})",
    )
    cmp.add_argument("--dvc-spec", default="dvc", help="what to pip install (default: dvc)")
    cmp.add_argument("--label", default="development run", help="printed with the date")
    cmp.set_defaults(func=compare)
    add_memory_commands(sub, common)
    args = ap.parse_args(argv)
    if getattr(args, "repeat", 1) < 1 or getattr(args, "size_gib", 1) <= 0:
        ap.error("need --repeat >= 1 and --size-gib > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
