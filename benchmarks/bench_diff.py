"""Benchmark `git theta diff` on two versions of a synthetic checkpoint.

Run on demand, never by the test suite:

    python benchmarks/bench_diff.py [--size-gib 1.0] [--tensors 200] [--changed-fraction 0.01]
                                    [--repeat 15] [--workdir DIR] [--markdown OUT.md] [--keep]
                                    [--seed 0]

The checkpoint and its second version come from bench_filter.py (the same GPT-like layout,
`--changed-fraction` of the tensors changed by a small delta). Both versions are committed in
a scratch repository with a HOME and global git config of its own. Then, with a warm page
cache, it measures:

- reference: reading the changed tensors' objects (both versions) from the local store, as
  `ObjectStore.load_tensor` does (sha256 check and decompression included): the least any
  diff that looks at values must do;
- `git theta diff HEAD~1 HEAD` inside this process (the command's library call: git plumbing,
  metadata, reading and comparing the changed tensors, rendering), so interpreter start-up
  and imports are left out; the target is under 2x the reference;
- the same command as a subprocess, and `git-theta --version`, to show start-up apart;
- `git theta diff HEAD~1` (the work tree file against HEAD~1: every tensor of the file is
  read and hashed) next to bench_filter's read+hash reference of the same file;
- `git diff HEAD~1 HEAD`, for which git smudges both versions to temporary files before it
  runs the diff driver (git's external-diff contract; see docs/diff.md).

Each number is the median of `--repeat` runs; the reference and the in-process diff run
interleaved, so other load on the machine falls on both alike.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402  (a sibling script, not a package)
    CHECKPOINT,
    GIB,
    MIB,
    Sandbox,
    choose_changed,
    logger,  # noqa: E402
    median_time,
    plan_checkpoint,
    read_hash_reference,
    scratch,
    write_changed,
    write_checkpoint,
)

TAG = "bench-diff"

log = logger(TAG)


TARGET_RATIO = 2.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=1.0)
    p.add_argument("--tensors", type=int, default=200)
    p.add_argument("--changed-fraction", type=float, default=0.01)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--markdown", type=Path)
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with scratch(args.workdir, keep=args.keep, prefix="bench-diff-", tag=TAG) as root:
        rows, notes = run(args, root)
    table = ["| measurement | seconds | note |", "|---|---:|---|"]
    table += [f"| {name} | {secs:.3f} | {note} |" for name, secs, note in rows]
    text = "\n".join(
        [
            "# git theta diff benchmark",
            "",
            f"Command: `{' '.join(sys.argv)}`",
            "",
            *table,
            "",
            *notes,
        ]
    )
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    return 0


def run(args: argparse.Namespace, root: Path) -> tuple[list[tuple[str, float, str]], list[str]]:
    sandbox = Sandbox(root)
    sandbox.run(["git-theta", "install"], cwd=root)
    plans = plan_checkpoint(int(args.size_gib * GIB), args.tensors)
    v1, v2 = root / "v1.safetensors", root / "v2.safetensors"
    log(f"writing {sum(p.nbytes for p in plans) / MIB:.0f} MiB checkpoint, {len(plans)} tensors")
    write_checkpoint(v1, plans, args.seed)
    changed = choose_changed(plans, args.changed_fraction)
    write_changed(v1, v2, changed, args.seed)
    repo = root / "repo"
    sandbox.run(["git", "init", "-q", str(repo)], cwd=root)
    sandbox.run(["git", "theta", "track", CHECKPOINT], cwd=repo)
    sandbox.run(["git", "commit", "-q", "-m", "track"], cwd=repo)
    for version, message in ((v1, "v1"), (v2, "v2")):
        log(f"committing {message}")
        time.sleep(1.1)  # a new mtime second, so git never takes the copy for stat-clean
        shutil.copyfile(version, repo / CHECKPOINT)
        sandbox.run(["git", "add", CHECKPOINT], cwd=repo)
        sandbox.run(["git", "commit", "-q", "-m", message], cwd=repo)

    # In-process measurements see the sandbox's environment and work in the repository.
    os.environ.clear()
    os.environ.update(sandbox.env)
    os.chdir(repo)
    from git_theta import metadata as md
    from git_theta.commands.diff import DiffOptions, diff
    from git_theta.git.repo import Repo
    from git_theta.store import ObjectStore

    r = Repo()
    old = md.decode(r.read_blob(f"HEAD~1:{CHECKPOINT}") or b"")
    new = md.decode(r.read_blob(f"HEAD:{CHECKPOINT}") or b"")
    r.close()
    names = [p.name for p in changed]
    refs = [m.params[n].object for n in names for m in (old, new)]
    raw_bytes = sum(old.params[n].nbytes + new.params[n].nbytes for n in names)
    store = ObjectStore(repo / ".git" / "theta")

    def reference() -> None:
        for ref in refs:
            store.load_tensor(ref)

    def library() -> str:
        out = io.StringIO()
        diff(["HEAD~1", "HEAD"], [], options=DiffOptions(), out=out)
        return out.getvalue()

    text = library()
    shown = [line.split()[1] for line in text.splitlines()[3:]]
    if sorted(shown) != sorted(names):
        raise SystemExit(f"bench-diff: the diff shows {shown}, expected {names}")
    log("timing")
    # Interleaved, so load from elsewhere on the machine falls on both alike.
    ref_times, lib_times = [], []
    for _ in range(args.repeat):
        ref_times.append(median_time(reference, 1))
        lib_times.append(median_time(library, 1))
    ref_s, lib_s = statistics.median(ref_times), statistics.median(lib_times)

    def sub(*cmd: str) -> float:
        return median_time(
            lambda: subprocess.run(cmd, cwd=repo, env=sandbox.env, check=True, capture_output=True),
            args.repeat,
        )

    startup = sub("git-theta", "--version")
    cli = sub("git", "theta", "diff", "HEAD~1", "HEAD")
    # A new mtime makes the file stat-dirty, so git reports no blob id for it and the diff
    # reads and hashes the file itself (diff-index does not refresh the index).
    os.utime(repo / CHECKPOINT)
    worktree = sub("git", "theta", "diff", "HEAD~1")
    read_hash = statistics.median(
        read_hash_reference(repo / CHECKPOINT) for _ in range(args.repeat)
    )
    git_diff = sub("git", "diff", "HEAD~1", "HEAD")

    ratio = lib_s / ref_s
    verdict = "met" if ratio < TARGET_RATIO else "NOT met"
    rows = [
        (
            "reference: read the changed tensors' objects (both versions)",
            ref_s,
            f"{len(refs)} objects, {raw_bytes / MIB:.1f} MiB raw",
        ),
        (
            "`git theta diff HEAD~1 HEAD`, in process",
            lib_s,
            f"{ratio:.2f}x the reference; target < {TARGET_RATIO:g}x: **{verdict}**",
        ),
        ("`git theta diff HEAD~1 HEAD`, subprocess", cli, "includes interpreter start-up"),
        ("`git-theta --version` (start-up and imports)", startup, ""),
        (
            "`git theta diff HEAD~1` (work tree file against HEAD~1)",
            worktree,
            f"read+hash reference of the file: {read_hash:.3f} s",
        ),
        ("`git diff HEAD~1 HEAD` (git smudges both versions first)", git_diff, ""),
    ]
    notes = [
        f"- checkpoint: {sum(p.nbytes for p in plans) / MIB:.1f} MiB, {len(plans)} tensors; "
        f"changed: {', '.join(f'{p.name} ({p.dtype} {list(p.shape)})' for p in changed)}",
        f"- median of {args.repeat} runs each; warm page cache; machine: {os.cpu_count()} CPUs",
    ]
    return rows, notes


if __name__ == "__main__":
    raise SystemExit(main())
