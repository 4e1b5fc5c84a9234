"""Wall time, CPU and peak resident memory of a whole process tree: a command, Git, every
filter, hook and helper it starts, summed.

GNU time (`/usr/bin/time -f %M`) reports one process's maximum, so it misses Git's own buffer
when the filter is the process wrapped, and vice versa. The cgroup v1 memory controller here
charges the page cache a checkout writes to the group, so its peak grows with the file written
rather than with what the processes hold. Hence polling: every `interval` seconds, read
`/proc/<pid>/stat` of every descendant of this process and sum their resident set sizes.
This process becomes a child subreaper, so a helper whose parent exits first is still counted.
The sum counts a page shared by two processes twice (a read-only mapping of the same file):
an upper bound, never an under-count, except for a peak shorter than `interval`.

    python benchmarks/tree_rss.py [--interval 0.01] -- git checkout -q HEAD~1
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

PAGE = os.sysconf("SC_PAGE_SIZE")
_PR_SET_CHILD_SUBREAPER = 36
DEFAULT_INTERVAL = 0.01


class TreeRun(NamedTuple):
    seconds: float
    peak_rss: int  # bytes, summed over the tree at the sample where the sum was largest
    cpu: float  # user+sys seconds of every descendant that was waited for
    returncode: int
    stdout: str
    stderr: str
    samples: int


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, resident bytes) of `pid`."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[21]) * PAGE


class _Sampler(threading.Thread):
    """Sums the resident memory of this process's descendants until stopped; remembers the
    largest sum. A pid first seen outside the tree is never read again while it lives."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self.done = threading.Event()
        self._outside: set[int] = set()

    def run(self) -> None:
        while True:
            self.sample()
            if self.done.wait(self.interval):
                self.sample()  # a last look after the command returned: usually empty
                return

    def sample(self) -> None:
        me = os.getpid()
        live = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        self._outside &= live
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for pid in live - self._outside - {me}:
            try:
                parents[pid], rss[pid] = _stat(pid)
            except (OSError, ValueError, IndexError):
                continue
        tree = {me}
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if pid not in tree and parent in tree:
                    tree.add(pid)
                    grew = True
        self._outside |= parents.keys() - tree
        self.peak = max(self.peak, sum(rss[p] for p in tree if p != me))
        self.samples += 1


def _reap_orphans() -> None:
    """Wait for descendants that were re-parented to us (we are their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_tree(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    interval: float = DEFAULT_INTERVAL,
) -> TreeRun:
    """Run `args` to completion; its wall seconds, the tree's peak RSS and CPU seconds."""
    _become_subreaper()
    _reap_orphans()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = _Sampler(interval)
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    _reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return TreeRun(
        seconds,
        sampler.peak,
        cpu,
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        sampler.samples,
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command after --")
    res = run_tree(command, interval=args.interval)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    print(
        f"tree_rss: exit {res.returncode}, {res.seconds:.2f} s, peak RSS "
        f"{res.peak_rss / (1 << 20):.1f} MiB, CPU {res.cpu:.2f} s, {res.samples} samples",
        file=sys.stderr,
    )
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
