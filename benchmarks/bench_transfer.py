"""Benchmark git-theta's push and clone against Git LFS, both talking to giftless on loopback.

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_transfer.py [--size-gib 1.0] [--tensors 200] [--changed-fraction 0.01]
                                        [--workdir DIR] [--markdown OUT.md] [--keep] [--seed 0]

Needs git, git-lfs and giftless (scripts/install-lfs-server.sh). The checkpoint and its second
version come from bench_filter.py's generator. Per tool, in a sandboxed HOME: a bare origin for
refs, a giftless repository for objects (named in a committed .lfsconfig, so clones find it),
then timed: the first `git push` (v1), `git clone` of that into an empty directory (verified
byte-identical), and the `git push` of v2 with `--changed-fraction` of the tensors changed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import (  # noqa: E402
    CHECKPOINT,
    GIB,
    MIB,
    Sandbox,
    choose_changed,
    log,
    plan_checkpoint,
    same_file,
    scratch,
    write_changed,
    write_checkpoint,
)

from testing.lfs_server import LfsServer  # noqa: E402

# Targets from the issue.
FIRST_PUSH_MAX_RATIO = 1.2  # git-theta time / Git LFS time
SECOND_PUSH_MIN_SPEEDUP = 10.0  # Git LFS time / git-theta time
CLONE_MAX_RATIO = 1.2


@dataclass(frozen=True)
class Tool:
    key: str
    label: str
    track: tuple[str, ...]


THETA = Tool("theta", "git-theta", ("git", "theta", "track", CHECKPOINT))
LFS = Tool("lfs", "Git LFS", ("git", "lfs", "track", CHECKPOINT))


@dataclass
class Result:
    first_push: float
    clone: float
    second_push: float
    server_first: int
    server_second: int


def _server_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def measure(sandbox: Sandbox, server: LfsServer, tool: Tool, v1: Path, v2: Path) -> Result:
    run = sandbox.run
    root = sandbox.root
    name = f"bench/{tool.key}"
    bare = root / f"origin-{tool.key}.git"
    repo = root / f"repo-{tool.key}"
    run(["git", "init", "-q", "--bare", str(bare)], cwd=root)
    run(["git", "init", "-q", str(repo)], cwd=root)
    run(["git", "remote", "add", "origin", str(bare)], cwd=repo)
    run(["git", "config", "-f", ".lfsconfig", "lfs.url", server.lfs_url(name)], cwd=repo)
    run(list(tool.track), cwd=repo)
    if tool is LFS:
        run(["git", "lfs", "install", "--local"], cwd=repo)  # its pre-push hook
    run(["git", "add", ".gitattributes", ".lfsconfig"], cwd=repo)
    run(["git", "commit", "-q", "-m", "track"], cwd=repo)
    run(["git", "push", "-q", "-u", "origin", "main"], cwd=repo)

    time.sleep(1.1)
    shutil.copyfile(v1, repo / CHECKPOINT)
    run(["git", "add", CHECKPOINT], cwd=repo)
    run(["git", "commit", "-q", "-m", "v1"], cwd=repo)
    log(f"{tool.label}: first push")
    first, _ = sandbox.timed(["git", "push", "-q", "origin", "main"], cwd=repo)
    stored_first = _server_bytes(server.storage / name)

    clone = root / f"clone-{tool.key}"
    log(f"{tool.label}: clone")
    clone_time, _ = sandbox.timed(["git", "clone", "-q", str(bare), str(clone)], cwd=root)
    diff = same_file(clone / CHECKPOINT, v1)
    if diff is not None:
        raise SystemExit(f"bench: {tool.label} clone differs from v1 at byte {diff}")

    time.sleep(1.1)
    shutil.copyfile(v2, repo / CHECKPOINT)
    run(["git", "add", CHECKPOINT], cwd=repo)
    run(["git", "commit", "-q", "-m", "v2"], cwd=repo)
    log(f"{tool.label}: second push")
    second, _ = sandbox.timed(["git", "push", "-q", "origin", "main"], cwd=repo)
    stored_second = _server_bytes(server.storage / name) - stored_first
    return Result(first, clone_time, second, stored_first, stored_second)


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def table(theta: Result, lfs: Result) -> list[tuple[str, str, str, str, str]]:
    first = theta.first_push / lfs.first_push
    second = lfs.second_push / theta.second_push
    clone = theta.clone / lfs.clone
    return [
        (
            "first `git push` (v1, empty server)",
            f"{theta.first_push:.2f} s",
            f"{lfs.first_push:.2f} s",
            f"git-theta/LFS = {first:.2f}x",
            f"≤{FIRST_PUSH_MAX_RATIO}x LFS: {_verdict(first <= FIRST_PUSH_MAX_RATIO)}",
        ),
        (
            "`git clone` (fresh directory, empty store; verified)",
            f"{theta.clone:.2f} s",
            f"{lfs.clone:.2f} s",
            f"git-theta/LFS = {clone:.2f}x",
            f"≤{CLONE_MAX_RATIO}x LFS: {_verdict(clone <= CLONE_MAX_RATIO)}",
        ),
        (
            "second `git push` (v2, 1% of tensors changed)",
            f"{theta.second_push:.2f} s",
            f"{lfs.second_push:.2f} s",
            f"LFS/git-theta = {second:.1f}x",
            f"≥{SECOND_PUSH_MIN_SPEEDUP:.0f}x faster: {_verdict(second >= SECOND_PUSH_MIN_SPEEDUP)}",
        ),
        (
            "server storage after first push",
            f"{theta.server_first / MIB:.1f} MiB",
            f"{lfs.server_first / MIB:.1f} MiB",
            "",
            "",
        ),
        (
            "server storage added by second push",
            f"{theta.server_second / MIB:.1f} MiB",
            f"{lfs.server_second / MIB:.1f} MiB",
            "",
            "",
        ),
    ]


def markdown(rows: list[tuple[str, str, str, str, str]]) -> str:
    head = "| measurement | git-theta | Git LFS | ratio | target |\n|---|---|---|---|---|\n"
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--tensors", type=int, default=200)
    parser.add_argument("--changed-fraction", type=float, default=0.01)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with scratch(args.workdir, keep=args.keep, prefix="bench-transfer-") as root:
        plans = plan_checkpoint(int(args.size_gib * GIB), args.tensors)
        v1, v2 = root / "v1.safetensors", root / "v2.safetensors"
        log(f"writing {args.size_gib} GiB checkpoint")
        write_checkpoint(v1, plans, args.seed)
        changed = choose_changed(plans, args.changed_fraction)
        write_changed(v1, v2, changed, args.seed)
        sandbox = Sandbox(root)
        sandbox.run(["git-theta", "install"], cwd=root)
        sandbox.run(["git", "lfs", "install"], cwd=root)
        # giftless has no locking API; without this Git LFS asks for it on every push.
        sandbox.run(["git", "config", "--global", "lfs.locksverify", "false"], cwd=root)
        with LfsServer(root / "server" / "storage") as server:
            theta = measure(sandbox, server, THETA, v1, v2)
            lfs = measure(sandbox, server, LFS, v1, v2)
        rows = table(theta, lfs)
        text = markdown(rows)
        size = v1.stat().st_size / MIB
        changed_names = ", ".join(p.name for p in changed)
        text += (
            f"\nCheckpoint {size:.1f} MiB, {len(plans)} tensors; v2 changes {changed_names}. "
            "giftless 0.6.2 (local storage) under waitress on 127.0.0.1; single run, warm cache.\n"
        )
        print(text)
        if args.markdown:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text("# git-theta vs Git LFS: transfer benchmark\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
