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
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xxhash

GIB = 1 << 30
MIB = 1 << 20
MB = 1_000_000
CHECKPOINT = "model.safetensors"
# Trained weights are roughly N(0, 0.02); the fine-tuning step adds about 5% of that.
WEIGHT_STD = 0.02
DELTA_STD = 0.001
VOCAB = 32_000
MAX_POSITIONS = 2_048
# Elements generated per step, so a large tensor never needs more than ~100 MiB of scratch.
GEN_CHUNK = 8 * MIB
# The reference read size for "read+hash", as the brief for the status target defines it.
HASH_CHUNK = 16 * MIB
# Small matrices are a rounding error next to the embeddings; step the width in multiples of 8.
WIDTH_STEP = 8
GNU_TIME = "/usr/bin/time"
NULL_FILTER = "cat >/dev/null; echo null"
DRAIN_FILTER = Path(__file__).with_name("drain_filter.py")
# Targets from the issue.
FIRST_ADD_SPEEDUP = 3.0
CHANGED_ADD_SPEEDUP = 8.0
STORED_VS_CHANGED = 1.1
STATUS_VS_REFERENCE = 1.5
RSS_SLACK_BYTES = 200 * MB

DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}
LAYER_DTYPES = ("F32", "F16", "BF16")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- the synthetic checkpoint -----------------------------------------------------------


class TensorPlan(NamedTuple):
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int  # into the data section

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_SIZES[self.dtype]


def _layout(width: int, n_tensors: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """A GPT-like model: embeddings and lm_head (big), attention (medium), MLP (big-ish),
    norms and biases (small). Layers cycle through F32, F16 and BF16; norms stay F32."""
    d, f = width, 4 * width
    per_layer = 12
    n_layers = max(1, (n_tensors - 5) // per_layer)
    extra = max(0, n_tensors - 5 - per_layer * n_layers)  # filled with one more bias per layer
    out: list[tuple[str, str, tuple[int, ...]]] = [
        ("embed_tokens.weight", "F32", (VOCAB, d)),
        ("embed_positions.weight", "F32", (MAX_POSITIONS, d)),
    ]
    for i in range(n_layers):
        dt, p = LAYER_DTYPES[i % len(LAYER_DTYPES)], f"layers.{i}"
        out += [
            (f"{p}.attn_norm.weight", "F32", (d,)),
            (f"{p}.attn_norm.bias", "F32", (d,)),
            (f"{p}.attn.q_proj.weight", dt, (d, d)),
            (f"{p}.attn.k_proj.weight", dt, (d, d)),
            (f"{p}.attn.v_proj.weight", dt, (d, d)),
            (f"{p}.attn.o_proj.weight", dt, (d, d)),
            (f"{p}.attn.o_proj.bias", dt, (d,)),
            (f"{p}.mlp_norm.weight", "F32", (d,)),
            (f"{p}.mlp_norm.bias", "F32", (d,)),
            (f"{p}.mlp.up_proj.weight", dt, (f, d)),
            (f"{p}.mlp.up_proj.bias", dt, (f,)),
            (f"{p}.mlp.down_proj.weight", dt, (d, f)),
        ]
        if i < extra:
            out.append((f"{p}.mlp.down_proj.bias", dt, (d,)))
    out += [
        ("final_norm.weight", "F32", (d,)),
        ("final_norm.bias", "F32", (d,)),
        ("lm_head.weight", "BF16", (VOCAB, d)),
    ]
    return out


def plan_checkpoint(size_bytes: int, n_tensors: int) -> list[TensorPlan]:
    """The layout whose total size is closest to `size_bytes`, with offsets filled in."""

    def total(width: int) -> int:
        return sum(math.prod(s) * DTYPE_SIZES[dt] for _, dt, s in _layout(width, n_tensors))

    width = WIDTH_STEP
    while total(width + WIDTH_STEP) <= size_bytes:
        width += WIDTH_STEP
    if abs(total(width + WIDTH_STEP) - size_bytes) < abs(total(width) - size_bytes):
        width += WIDTH_STEP
    plans, offset = [], 0
    for name, dtype, shape in _layout(width, n_tensors):
        plan = TensorPlan(name, dtype, shape, offset)
        plans.append(plan)
        offset += plan.nbytes
    return plans


def _header(plans: Sequence[TensorPlan]) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for p in plans:
        header[p.name] = {
            "dtype": p.dtype,
            "shape": list(p.shape),
            "data_offsets": [p.offset, p.offset + p.nbytes],
        }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def _to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values as the raw little-endian bytes of `dtype` (bf16: the upper 16 bits)."""
    if dtype == "F32":
        return values.astype("<f4", copy=False)
    if dtype == "F16":
        return values.astype("<f2")
    return (values.astype("<f4", copy=False).view("<u4") >> 16).astype("<u2")


def _from_dtype(raw: bytes, dtype: str) -> np.ndarray:
    if dtype == "F32":
        return np.frombuffer(raw, "<f4").copy()
    if dtype == "F16":
        return np.frombuffer(raw, "<f2").astype(np.float32)
    return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + GEN_CHUNK)) for i in range(0, n, GEN_CHUNK)]


def write_checkpoint(path: Path, plans: Sequence[TensorPlan], seed: int) -> None:
    """Write version 1 tensor by tensor; each tensor has its own seeded stream."""
    with path.open("wb") as f:
        f.write(_header(plans))
        for index, p in enumerate(plans):
            rng = np.random.default_rng([seed, index])
            for lo, hi in _chunks(math.prod(p.shape)):
                values = rng.standard_normal(hi - lo, dtype=np.float32)
                values *= WEIGHT_STD
                if p.name.endswith("norm.weight"):
                    values += 1.0
                f.write(_to_dtype(values, p.dtype).tobytes())


def choose_changed(plans: Sequence[TensorPlan], fraction: float) -> list[TensorPlan]:
    """~`fraction` of the tensors by count (at least 2), spread evenly over the size-sorted
    list so the pick mixes small and large tensors; deterministic."""
    k = min(len(plans), max(2, round(fraction * len(plans))))
    by_size = sorted(plans, key=lambda p: (p.nbytes, p.name))
    picks = {by_size[min(len(by_size) - 1, int((i + 0.5) * len(by_size) / k))] for i in range(k)}
    return sorted(picks, key=lambda p: p.offset)


def write_changed(v1: Path, v2: Path, changed: Sequence[TensorPlan], seed: int) -> None:
    """Version 2: a copy of version 1 with a small additive delta on the `changed` tensors."""
    shutil.copyfile(v1, v2)
    data_start = 8 + struct.unpack("<Q", _first8(v1))[0]
    with v2.open("r+b") as f:
        for p in changed:
            rng = np.random.default_rng([seed, 1_000_000 + p.offset])
            item = DTYPE_SIZES[p.dtype]
            for lo, hi in _chunks(math.prod(p.shape)):
                f.seek(data_start + p.offset + lo * item)
                raw = f.read((hi - lo) * item)
                values = _from_dtype(raw, p.dtype)
                values += rng.standard_normal(hi - lo, dtype=np.float32) * DELTA_STD
                new = _to_dtype(values, p.dtype).tobytes()
                f.seek(data_start + p.offset + lo * item)
                f.write(new)
    _check_changed(v1, v2, changed, data_start)


def _first8(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(8)


def _check_changed(v1: Path, v2: Path, changed: Sequence[TensorPlan], data_start: int) -> None:
    with v1.open("rb") as a, v2.open("rb") as b:
        for p in changed:
            a.seek(data_start + p.offset)
            b.seek(data_start + p.offset)
            if a.read(p.nbytes) == b.read(p.nbytes):
                raise SystemExit(f"bench: the delta left {p.name} unchanged; raise DELTA_STD")


# ---- an isolated git environment --------------------------------------------------------


class CommandFailed(Exception):
    pass


class Sandbox:
    """HOME, XDG config and global git config under `root`; no system config, fixed identity.

    The interpreter's own bin directory goes first on PATH so `git-theta` is the installed entry
    point itself, not a version-manager shim that would add its start-up to every filter run.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("GIT_") and k not in ("HOME", "XDG_CONFIG_HOME")
        }
        path = env.get("PATH", "")
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_TERMINAL_PROMPT="0",
            PATH=os.pathsep.join([str(Path(sys.executable).parent), path]),
        )
        self.env = env
        for key, value in (
            ("user.name", "Bench User"),
            ("user.email", "bench@example.com"),
            ("init.defaultBranch", "main"),
            ("advice.detachedHead", "false"),
        ):
            self.run(["git", "config", "--global", key, value], cwd=root)

    def run(self, args: Sequence[str], *, cwd: Path) -> str:
        proc = subprocess.run(list(args), cwd=cwd, env=self.env, capture_output=True, check=False)
        if proc.returncode != 0:
            raise CommandFailed(
                f"`{shlex.join(args)}` (in {cwd}) exited with {proc.returncode}\n"
                f"stdout: {proc.stdout.decode(errors='replace').strip()}\n"
                f"stderr: {proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout.decode(errors="replace")

    def timed(self, args: Sequence[str], *, cwd: Path) -> tuple[float, str]:
        """Seconds `args` took, after `sync` so earlier writes are not flushed on our clock."""
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        out = self.run(args, cwd=cwd)
        return time.perf_counter() - start, out


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


def tree_bytes(path: Path) -> int:
    """Apparent size of every regular file under `path`."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.stat(p).st_size
    return total


def _read_usage(path: Path) -> tuple[float, float]:
    """Max RSS in bytes and user+sys CPU seconds that GNU time wrote for the filter process
    (nan if it never ran)."""
    for _ in range(50):  # git waits for its filter on exit; allow for a slow final write
        if path.exists() and path.read_text().strip():
            break
        time.sleep(0.1)
    else:
        return math.nan, math.nan
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    path.unlink()
    kib, user, system = lines[-1].split()
    return int(kib) * 1024, float(user) + float(system)  # %M is KiB


def same_file(a: Path, b: Path) -> int | None:
    """None when the files are byte-identical, else the first differing offset."""
    with a.open("rb") as fa, b.open("rb") as fb:
        offset = 0
        while True:
            x, y = fa.read(HASH_CHUNK), fb.read(HASH_CHUNK)
            if x != y:
                n = min(len(x), len(y))
                diff = next((i for i in range(n) if x[i] != y[i]), n)
                return offset + diff
            if not x:
                return None
            offset += len(x)


def read_hash_reference(path: Path) -> float:
    """Seconds to read `path` and hash it with xxh3_128 in 16 MiB chunks, in Python."""
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    start = time.perf_counter()
    h = xxhash.xxh3_128()
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(view):
            h.update(view[:n])
    h.hexdigest()
    return time.perf_counter() - start


def retire(repo: Path) -> None:
    """Free a finished repository's disk without deleting its files (they go with the scratch
    directory at the end). On ext4 a new file skips every inode freed in the last ~30 s, one
    lookup each, so deleting a run's repositories slows the next run's file creation: a first
    `git add` of a 200-tensor, 1.6 MiB checkpoint (git-theta writes a file and up to two
    directories per tensor) took 0.60-0.67 s right after a repository was deleted, 0.37-0.40 s
    with none deleted. Truncating frees the blocks and drops the dirty pages, so nothing is
    written back during the next run either."""
    for path in repo.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.truncate(path, 0)


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
        return seconds, _read_usage(rss_file) if wrapped else (math.nan, math.nan)

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
    values = [getattr(r, attr) for r in results]
    return math.nan if any(math.isnan(v) for v in values) else statistics.median(values)


def _num(x: float, unit: str) -> str:
    return f"{x:.2f}" if unit == "s" else f"{x / MIB:.1f}"


def _cell(results: Sequence[Result], attr: str, unit: str) -> str:
    """The median, with the range in brackets when there are several runs."""
    m = median(results, attr)
    if math.isnan(m):
        return "n/a"
    text = f"{_num(m, unit)} {unit}"
    values = [getattr(r, attr) for r in results]
    low, high = _num(min(values), unit), _num(max(values), unit)
    return text if low == high else f"{text} ({low}–{high})"


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / 1024:.1f} KiB"


def _ratio(lfs: float, ours: float) -> str:
    if math.isnan(lfs) or math.isnan(ours) or ours <= 0:
        return "—"
    return f"{lfs / ours:.2f}x"


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


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
        return f"≥{goal:g}x faster than LFS: {_verdict(ratio >= goal)}"

    def rss_target(attr: str) -> str:
        value = median(ours, attr)
        verdict = "n/a" if math.isnan(value) else _verdict(value <= rss_limit)
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
            f"{_verdict(stored <= STORED_VS_CHANGED)}",
        ),
        ("changed tensors' raw bytes", fixed, fixed, "—", ""),
        both("total `.git` size after both commits", "git_total", "MiB"),
        both(
            "`git status` after `touch`",
            "status_touch",
            "s",
            f"≤{STATUS_VS_REFERENCE:g}x read+hash reference (is {status:.2f}x; a filter that "
            f"only drains git's pipe is {floor:.2f}x): {_verdict(status <= STATUS_VS_REFERENCE)}",
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
            "no slower than LFS: " + _verdict(median(ours, "checkout") <= median(lfs, "checkout")),
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


def text_table(rows: Sequence[Sequence[str]]) -> str:
    plain = [[c.replace("**", "").replace("`", "") for c in r] for r in [HEADERS, *rows]]
    widths = [max(len(r[i]) for r in plain) for i in range(len(HEADERS))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in plain]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] * len(HEADERS)) + "|"]
    lines += ["| " + " | ".join(c or " " for c in r) + " |" for r in rows]
    return "\n".join(lines)


class Sources(NamedTuple):
    """The git_theta sources git will run, file by file, to tell runs of different code apart
    (the package may be edited while a run is in progress)."""

    root: Path | None
    files: dict[str, str]  # relative path -> content hash

    @classmethod
    def snapshot(cls) -> Sources:
        spec = importlib.util.find_spec("git_theta")
        if spec is None or spec.origin is None:
            return cls(None, {})
        root = Path(spec.origin).parent
        files = {
            str(p.relative_to(root)): xxhash.xxh3_64_hexdigest(p.read_bytes())
            for p in sorted(root.rglob("*.py"))
        }
        return cls(root, files)

    def fingerprint(self) -> str:
        digest = xxhash.xxh3_64_hexdigest(json.dumps(self.files, sort_keys=True).encode())
        return f"{digest[:12]} ({self.root})"

    def changed(self, other: Sources) -> list[str]:
        names = self.files.keys() | other.files.keys()
        return sorted(n for n in names if self.files.get(n) != other.files.get(n))


def _first_line(args: Sequence[str], sandbox: Sandbox) -> str:
    try:
        return sandbox.run(args, cwd=sandbox.root).strip().splitlines()[0]
    except (CommandFailed, IndexError, FileNotFoundError) as exc:
        return f"unavailable ({exc})"


def machine_info(sandbox: Sandbox, sources: Sources) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    repo_root = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(repo_root), "rev-parse", "--short", "HEAD"], sandbox)
    dirty = sandbox.run(["git", "-C", str(repo_root), "status", "--porcelain"], cwd=sandbox.root)
    return [
        ("CPUs", f"{os.cpu_count()} ({cpu})"),
        ("memory", mem),
        ("OS", platform.platform()),
        ("git", _first_line(["git", "--version"], sandbox)),
        ("git lfs", _first_line(["git", "lfs", "version"], sandbox)),
        (
            "git-theta",
            f"{_first_line(['git-theta', '--version'], sandbox)} at "
            f"{shutil.which('git-theta', path=sandbox.env['PATH'])}",
        ),
        ("git-theta source", f"{commit}{' + uncommitted changes' if dirty.strip() else ''}"),
        ("git-theta source fingerprint", sources.fingerprint()),
        ("python", sys.version.split()[0] + f" ({sys.executable})"),
    ]


# ---- main -------------------------------------------------------------------------------


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
    for run in range(1, args.repeat + 1):
        # Alternate which tool goes first, so neither always inherits the other's leftovers.
        order = (THETA, LFS) if run % 2 else (LFS, THETA)
        for tool in order:
            runs[tool.key].append(measure(sandbox, tool, v1, v2, run=run))
            if not args.keep:
                retire(root / f"repo-{tool.key}-{run}")
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
    print(text_table(rows))
    print()
    for line in summary + notes:
        print(line)
    if args.markdown is None:
        return
    md = [
        "# git-theta vs Git LFS: filter benchmark",
        "",
        f"Command: `{command}`",
        "",
        markdown_table(rows),
        "",
        "Ratio is Git LFS ÷ git-theta: above 1 means git-theta is faster or smaller. "
        f"{_runs_note(args.repeat)} The page cache is warm (both versions were just written).",
        "",
        *[f"- {line}" for line in summary + notes],
        "",
        "Machine:",
        "",
        *[f"- {k}: {v}" for k, v in machine_info(sandbox, sources)],
        "",
    ]
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text("\n".join(md))
    log(f"wrote {args.markdown}")


def _runs_note(repeat: int) -> str:
    if repeat == 1:
        return "Single run."
    return f"Median of {repeat} runs, range in brackets; the tools alternate going first."


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv)
    for exe in ("git", "git-lfs"):
        if shutil.which(exe) is None:
            raise SystemExit(f"bench: `{exe}` is not on PATH")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="git-theta-bench-", dir=args.workdir))
    log(f"scratch directory {root}")
    try:
        report(args, root, command)
    except CommandFailed as exc:
        raise SystemExit(f"bench: {exc}") from None
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
