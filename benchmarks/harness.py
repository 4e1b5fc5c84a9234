"""What every benchmark shares: the synthetic checkpoint, an isolated git environment, timing
(wall, CPU and peak RSS from GNU time), medians with their ranges, the machine and load, and
the scratch directory. Benchmarks are scripts run on demand (benchmarks/README.md); they import
this module as a sibling (`sys.path` holds the script's directory).
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import xxhash

T = TypeVar("T")

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

DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}
LAYER_DTYPES = ("F32", "F16", "BF16")
REPO_ROOT = Path(__file__).resolve().parent.parent


def log(msg: str, *, tag: str = "bench") -> None:
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


def logger(tag: str) -> Callable[[str], None]:
    """`log` for a benchmark whose lines carry their own tag."""

    def log_tagged(msg: str) -> None:
        log(msg, tag=tag)

    return log_tagged


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


def to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
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
            for values in tensor_values(p, seed, index):
                f.write(to_dtype(values, p.dtype).tobytes())


def tensor_values(plan: TensorPlan, seed: int, index: int) -> Iterator[np.ndarray]:
    """The float32 values of the `index`th tensor of the checkpoint, a chunk at a time."""
    rng = np.random.default_rng([seed, index])
    for lo, hi in _chunks(math.prod(plan.shape)):
        values = rng.standard_normal(hi - lo, dtype=np.float32)
        values *= WEIGHT_STD
        if plan.name.endswith("norm.weight"):
            values += 1.0
        yield values


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
                new = to_dtype(values, p.dtype).tobytes()
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


# ---- measuring ---------------------------------------------------------------------------


def tree_bytes(path: Path) -> int:
    """Apparent size of every regular file under `path`."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.stat(p).st_size
    return total


def read_usage(path: Path) -> tuple[float, float]:
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
        # A file with other links is shared (a local clone hard-links the origin's objects):
        # truncating it would empty the origin's copy, which later runs still read.
        if path.is_file() and not path.is_symlink() and path.stat().st_nlink == 1:
            os.truncate(path, 0)


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


def first_line(args: Sequence[str], sandbox: Sandbox) -> str:
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
    repo_root = REPO_ROOT
    commit = first_line(["git", "-C", str(repo_root), "rev-parse", "--short", "HEAD"], sandbox)
    dirty = sandbox.run(["git", "-C", str(repo_root), "status", "--porcelain"], cwd=sandbox.root)
    return [
        ("CPUs", f"{os.cpu_count()} ({cpu})"),
        ("memory", mem),
        ("OS", platform.platform()),
        ("git", first_line(["git", "--version"], sandbox)),
        ("git lfs", first_line(["git", "lfs", "version"], sandbox)),
        (
            "git-theta",
            f"{first_line(['git-theta', '--version'], sandbox)} at "
            f"{shutil.which('git-theta', path=sandbox.env['PATH'])}",
        ),
        ("git-theta source", f"{commit}{' + uncommitted changes' if dirty.strip() else ''}"),
        ("git-theta source fingerprint", sources.fingerprint()),
        ("python", sys.version.split()[0] + f" ({sys.executable})"),
    ]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, to show how busy the machine was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def interleaved(repeat: int, items: Sequence[T]) -> Iterator[tuple[int, T]]:
    """(run, item) for `repeat` runs (numbered from 1) of every item, the items taking turns going first, so a
    warming cache or a busy neighbour does not favour one of them."""
    for run in range(1, repeat + 1):
        order = list(items) if run % 2 else list(reversed(items))
        for item in order:
            yield run, item


def rotated(repeat: int, items: Sequence[T]) -> Iterator[tuple[int, T]]:
    """(run, item) for `repeat` runs (numbered from 1) of every item; run r starts at item
    r - 1, so with three or more tools each one goes first, second, ... in turn."""
    for run in range(1, repeat + 1):
        k = (run - 1) % len(items)
        for item in [*items[k:], *items[:k]]:
            yield run, item


# ---- reporting ---------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median; nan when there are none or any is nan (a run that measured nothing)."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return statistics.median(values)


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """The median seconds of `repeat` calls of `fn`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread(values: Sequence[float], fmt: Callable[[float], str], unit: str) -> str:
    """`median unit`, with the range in brackets when the runs differ as shown."""
    m = median(values)
    if math.isnan(m):
        return "n/a"
    text = f"{fmt(m)} {unit}"
    low, high = fmt(min(values)), fmt(max(values))
    return text if low == high else f"{text} ({low}–{high})"


def verdict(ok: bool, *, bold: bool = False) -> str:
    text = "met" if ok else "NOT met"
    return f"**{text}**" if bold else text


def text_table(
    headers: Sequence[str] | None,
    rows: Sequence[Sequence[str]],
    *,
    sep: str = " | ",
    rule: str | None = "-+-",
    plain: bool = False,
) -> str:
    """Columns padded to their widest cell; `rule` under the headers; `plain` drops Markdown
    emphasis and code marks."""
    table = [list(r) for r in ([headers] if headers else []) + list(rows)]
    if plain:
        table = [[c.replace("**", "").replace("`", "") for c in r] for r in table]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = [sep.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    if headers and rule is not None:
        lines.insert(1, rule.join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(c.strip() or " " for c in r) + " |" for r in rows]
    return "\n".join(lines)


def report_lines(lines: Sequence[str]) -> None:
    """Print the table's notes, after a blank line."""
    print()
    for line in lines:
        print(line)


def write_markdown(
    path: Path,
    *,
    title: str,
    command: str,
    table: str,
    about: str,
    lines: Sequence[str],
    machine: Sequence[tuple[str, str]],
    when: str = "",
    tag: str = "bench",
) -> None:
    """The report as Markdown: title, command, table, what the numbers are, notes, machine."""
    md = [
        f"# {title}",
        "",
        f"Command: `{command}`" + (f" ({when})" if when else ""),
        "",
        table,
        "",
        about,
        "",
        *[f"- {line}" for line in lines],
        "",
        "Machine:",
        "",
        *[f"- {k}: {v}" for k, v in machine],
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md))
    log(f"wrote {path}", tag=tag)


def require(*tools: str, tag: str = "bench") -> None:
    """Stop with a one-line message unless every tool is on PATH."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise SystemExit(f"{tag}: `{tool}` is not on PATH")


def runs_note(repeat: int, *, alternate: bool = True) -> str:
    if repeat == 1:
        return "Single run."
    turns = "; the tools alternate going first" if alternate else ""
    return f"Median of {repeat} runs, range in brackets{turns}."


@contextlib.contextmanager
def scratch(workdir: Path | None, *, keep: bool, prefix: str, tag: str = "bench") -> Iterator[Path]:
    """A scratch directory under `workdir` (default TMPDIR), removed after unless `keep`; a
    failing command ends the benchmark with its message, not a traceback."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    log(f"scratch directory {root}", tag=tag)
    try:
        yield root
    except CommandFailed as exc:
        raise SystemExit(f"{tag}: {exc}") from None
    finally:
        if keep:
            log(f"kept {root}", tag=tag)
        else:
            shutil.rmtree(root, ignore_errors=True)


def command_line(argv: Sequence[str] | None) -> str:
    """The command that made a report, to print beside its numbers."""
    return shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv)
