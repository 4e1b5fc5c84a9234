"""Benchmark `git theta similar --all` over N LoRA specialists of a ~100M-parameter base.

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_similar.py [--size-mb 300] [--tensors 200] [--specialists 8,32]
                                       [--rank 8] [--repeat 3] [--workdir DIR]
                                       [--markdown OUT.md] [--keep] [--seed 0]

The base is the harness's synthetic GPT-like checkpoint (300 MB: 104M parameters, F32/F16/BF16
layers), committed on `main` through the clean filter. Each specialist is a LoRA update of rank
r on every layer's q, v, up and down projections (64 matrices), stored as git-theta stores a
LoRA (factor objects, a `low-rank` record per parameter) and committed on a branch of its own
with git plumbing (hash-object, mktree, commit-tree: no checkpoint is written per branch). A
`target` branch is a further LoRA whose factors share directions with specialists 0 and 1.

Measured, each as one process under GNU time, interleaved:

- `git theta similar target --all --format json`: every branch's task vector against
  target's, from the stored factors (<B1 A1, B2 A2> = sum((B1^T B2) * (A1 A2^T)));
- numpy on the dense-expanded task vectors of the same factors (`--dense-baseline`, this
  script): B A made as an m x n float64 array per parameter, then the dot products.

Both give the same cosines (checked to 1e-9). A second table times one inner product of two
rank-r updates of a 4096 x 4096 matrix, structured against dense, for several r: the
structured cost grows as r^2 (m + n), the dense one as r m n.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# One BLAS thread on both sides (set before numpy loads, inherited by every command run): on
# a 2-core machine shared with other work, threaded BLAS calls of a few milliseconds mostly
# measured the contention (one rank-16 product took 0.05 ms or 900 ms from run to run).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402  (a sibling script, not a package)
    CHECKPOINT,
    GNU_TIME,
    MB,
    MIB,
    Sandbox,
    Sources,
    command_line,
    load_average,
    logger,
    machine_info,
    markdown_table,
    median_time,
    plan_checkpoint,
    report_lines,
    require,
    runs_note,
    scratch,
    spread,
    text_table,
    write_checkpoint,
    write_markdown,
)

TAG = "bench-similar"
# The projections a LoRA usually targets (PEFT's "all linear" minus k and o).
TARGETS = ("attn.q_proj.weight", "attn.v_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
# Factor scale: a trained LoRA's B A is small next to the weights (std 0.02).
FACTOR_STD = 0.01
MICRO_SHAPE = (4096, 4096)
MICRO_RANKS = (4, 16, 64)

log = logger(TAG)


# ---- the specialists --------------------------------------------------------------------


def factors(
    plans: Sequence, rank: int, seed: int, shared: dict[str, tuple] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """name -> (b, a, scale) for every targeted parameter; `shared` factors are mixed in."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in plans:
        if not p.name.endswith(TARGETS):
            continue
        m, n = p.shape
        b = rng.standard_normal((m, rank), dtype=np.float32) * FACTOR_STD
        a = rng.standard_normal((rank, n), dtype=np.float32) * FACTOR_STD
        if shared is not None:
            b = b + shared[p.name][0]
            a = a + shared[p.name][1]
        out[p.name] = (b, a, 2.0)  # lora_alpha / r = 2
    return out


def commit_specialist(
    sandbox: Sandbox, repo: Path, base_meta: bytes, branch: str, lora: dict, tree: str
) -> None:
    """Put `lora`'s factors in the store and commit its metadata on `branch` over main."""
    from git_theta import metadata as md
    from git_theta.store import ObjectStore, encode_object
    from git_theta.tensor import RawTensor, content_hash
    from git_theta.updates.low_rank import low_rank_record
    from git_theta.updates.rebuild import rebuild

    store = ObjectStore(repo / ".git" / "theta")
    meta = md.decode(base_meta)
    params = dict(meta.params)

    def put(x: np.ndarray):
        return store.put(encode_object(RawTensor("F32", x.shape, x.tobytes())))

    for name, (b, a, scale) in lora.items():
        entry = params[name]
        record = low_rank_record(put(a), put(b), scale, transpose=False, tolerance=1.0)
        with_update = md.ParamEntry(entry.dtype, entry.shape, "", entry.object, (record,))
        rebuilt = rebuild(with_update, store.load_tensor)
        params[name] = md.ParamEntry(
            entry.dtype, entry.shape, content_hash(rebuilt.data), entry.object, (record,)
        )
    blob = md.encode(md.Metadata(meta.format, meta.layout, params))
    oid = _git_input(sandbox, repo, ["git", "hash-object", "-w", "--no-filters", "--stdin"], blob)
    entries = sandbox.run(["git", "ls-tree", tree], cwd=repo).splitlines()
    lines = [
        f"100644 blob {oid}\t{CHECKPOINT}" if line.endswith(f"\t{CHECKPOINT}") else line
        for line in entries
    ]
    new_tree = _git_input(sandbox, repo, ["git", "mktree"], ("\n".join(lines) + "\n").encode())
    commit = sandbox.run(["git", "commit-tree", new_tree, "-p", "main", "-m", branch], cwd=repo)
    sandbox.run(["git", "update-ref", f"refs/heads/{branch}", commit.strip()], cwd=repo)


def _git_input(sandbox: Sandbox, repo: Path, args: list[str], data: bytes) -> str:
    proc = subprocess.run(args, cwd=repo, env=sandbox.env, input=data, capture_output=True)
    if proc.returncode:
        raise SystemExit(f"{TAG}: {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode().strip()


def save_factors(path: Path, lora: dict) -> None:
    arrays = {}
    for name, (b, a, scale) in lora.items():
        arrays[f"{name}|b"], arrays[f"{name}|a"] = b * np.float32(scale), a
    np.savez(path, **arrays)


# ---- the dense baseline -----------------------------------------------------------------


def dense_baseline(factor_dir: Path, names: Sequence[str]) -> dict[str, float]:
    """Cosines of each named specialist's task vector with target's, every B A made dense."""

    def dense(name: str) -> dict[str, np.ndarray]:
        with np.load(factor_dir / f"{name}.npz") as z:
            keys = sorted({k.split("|")[0] for k in z.files})
            return {
                k: z[f"{k}|b"].astype(np.float64) @ z[f"{k}|a"].astype(np.float64) for k in keys
            }

    target = dense("target")
    t_sq = sum(float(np.vdot(v, v)) for v in target.values())
    out = {}
    for name in names:
        other = dense(name)
        dot = sum(float(np.vdot(target[k], other[k])) for k in target)
        o_sq = sum(float(np.vdot(v, v)) for v in other.values())
        out[name] = dot / math.sqrt(t_sq * o_sq)
    return out


# ---- measuring --------------------------------------------------------------------------


def timed(sandbox: Sandbox, args: Sequence[str], *, cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (bytes) and stdout of `args` under GNU time."""
    rss_file = sandbox.root / "rss.txt"
    start = time.perf_counter()
    out = sandbox.run([GNU_TIME, "-f", "%M", "-o", str(rss_file), *args], cwd=cwd)
    seconds = time.perf_counter() - start
    return seconds, int(rss_file.read_text().split()[-1]) * 1024, out


def measure(
    sandbox: Sandbox, repo: Path, factor_dir: Path, count: int, repeat: int
) -> dict[str, list[tuple[float, float]]]:
    """(seconds, peak RSS) per run of each side, taking turns going first; the cosines of
    every run are checked against numpy's."""
    names = [f"spec-{i:02d}" for i in range(count)]
    commands = {
        "theta": ["git-theta", "similar", "target", "--all", "--format", "json"],
        "numpy": [sys.executable, __file__, "--dense-baseline", str(factor_dir), *names],
    }
    rows: dict[str, list[tuple[float, float]]] = {"theta": [], "numpy": []}
    for run in range(repeat):
        cosines = {}
        for tool in ("theta", "numpy") if run % 2 == 0 else ("numpy", "theta"):
            seconds, rss, out = timed(sandbox, commands[tool], cwd=repo)
            rows[tool].append((seconds, rss))
            doc = json.loads(out)
            if tool == "theta":
                doc = {e["revision"]: e["cosine"] for e in doc["revisions"]}
            cosines[tool] = doc
        worst = max(abs(cosines["theta"][n] - cosines["numpy"][n]) for n in names)
        if worst > 1e-9:
            raise SystemExit(f"{TAG}: N={count}: cosines differ from numpy's by {worst:.3g}")
    log(f"N={count}: cosines equal numpy's within {worst:.1e}")
    return rows


def _dense_inner(x, y) -> float:  # noqa: ANN001  (two LowRankTerm)
    return float(np.vdot(x.b @ x.a, y.b @ y.a))


def micro_rows(repeat: int) -> list[list[str]]:
    from git_theta.similarity.terms import LowRankTerm, inner

    m, n = MICRO_SHAPE
    rows = []
    for r in MICRO_RANKS:
        rng = np.random.default_rng(r)
        x = LowRankTerm(rng.standard_normal((m, r)), rng.standard_normal((r, n)))
        y = LowRankTerm(rng.standard_normal((m, r)), rng.standard_normal((r, n)))
        low = median_time(lambda x=x, y=y: inner(x, y), repeat)
        dense = median_time(lambda x=x, y=y: _dense_inner(x, y), repeat)
        assert math.isclose(inner(x, y), _dense_inner(x, y), rel_tol=1e-9)
        rows.append(
            [
                f"{m}x{n}, r={r}",
                f"{low * 1e3:.3f} ms",
                f"{dense * 1e3:.1f} ms",
                f"{dense / low:.1f}x",
                f"{r * r * (m + n) / 1e6:.2f} M / {2 * r * m * n / 1e6:.0f} M",
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=300)
    parser.add_argument("--tensors", type=int, default=200)
    parser.add_argument("--specialists", default="8,32", help="comma-separated N to measure")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dense-baseline", nargs="+", metavar=("DIR", "NAME"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.dense_baseline:  # the numpy side, run as its own process under GNU time
        factor_dir, *names = args.dense_baseline
        print(json.dumps(dense_baseline(Path(factor_dir), names)))
        return 0
    require("git", GNU_TIME, tag=TAG)
    counts = sorted(int(x) for x in args.specialists.split(","))
    sources = Sources.snapshot()
    load_start = load_average()
    with scratch(args.workdir, keep=args.keep, prefix="bench-similar-", tag=TAG) as root:
        sandbox = Sandbox(root)
        sandbox.run(["git-theta", "install"], cwd=root)
        repo, factor_dir = root / "repo", root / "factors"
        factor_dir.mkdir()
        sandbox.run(["git", "init", "-q", str(repo)], cwd=root)
        sandbox.run(["git", "theta", "track", CHECKPOINT], cwd=repo)
        plans = plan_checkpoint(int(args.size_mb * MB), args.tensors)
        n_params = sum(math.prod(p.shape) for p in plans)
        write_checkpoint(repo / CHECKPOINT, plans, args.seed)
        sandbox.run(["git", "add", ".gitattributes", CHECKPOINT], cwd=repo)
        sandbox.run(["git", "commit", "-q", "-m", "base"], cwd=repo)
        (repo / CHECKPOINT).unlink()  # only metadata is needed from here on
        base_meta = sandbox.run(["git", "cat-file", "blob", f"main:{CHECKPOINT}"], cwd=repo)
        tree = sandbox.run(["git", "rev-parse", "main^{tree}"], cwd=repo).strip()
        loras = [factors(plans, args.rank, args.seed + 1 + i) for i in range(counts[-1])]
        shared = {k: (v0[0] + v1[0], v0[1] + v1[1]) for k, v0, v1 in _zip(loras[0], loras[1])}
        target = factors(plans, args.rank, args.seed + 10_000, shared)
        n_lora = sum(b.size + a.size for b, a, _ in target.values())
        start = time.perf_counter()
        commit_specialist(sandbox, repo, base_meta.encode(), "target", target, tree)
        save_factors(factor_dir / "target.npz", target)
        results: dict[int, dict[str, list[tuple[float, float]]]] = {}
        committed = 0
        for count in counts:
            for i in range(committed, count):  # N grows: the first N specialists are kept
                commit_specialist(
                    sandbox, repo, base_meta.encode(), f"spec-{i:02d}", loras[i], tree
                )
                save_factors(factor_dir / f"spec-{i:02d}.npz", loras[i])
            committed = count
            log(f"{count} LoRA branches committed ({time.perf_counter() - start:.1f} s so far)")
            results[count] = measure(sandbox, repo, factor_dir, count, args.repeat)
        micro = micro_rows(max(args.repeat, 7))
        load_end = load_average()
        table_rows = []
        for count, rows in results.items():
            for tool, label in (
                ("theta", "`git theta similar target --all`"),
                ("numpy", "numpy, dense B A"),
            ):
                secs = [s for s, _ in rows[tool]]
                rss = [r for _, r in rows[tool]]
                table_rows.append(
                    [
                        f"{count}",
                        label,
                        spread(secs, lambda v: f"{v:.2f}", "s"),
                        spread(rss, lambda v: f"{v / MIB:.0f}", "MiB"),
                    ]
                )
        headers = ["N", "command", "wall time", "peak RSS"]
        micro_headers = [
            "one inner product",
            "low-rank",
            "dense",
            "dense ÷ low-rank",
            "flops r²(m+n) / 2rmn",
        ]
        notes = [
            f"Base: {n_params / 1e6:.1f}M parameters ({args.size_mb:g} MB, {args.tensors} tensors); "
            f"each specialist rank {args.rank} on {len(target)} matrices ({n_lora / 1e6:.2f}M factor "
            f"values, {sum(math.prod(x.shape) for x in plans if x.name.endswith(TARGETS)) / 1e6:.1f}M dense).",
            runs_note(args.repeat) + " Every run's cosines agree with numpy's to 1e-9.",
            f"Load average (1/5/15 min): {load_start} at the start, {load_end} at the end.",
        ]
        print(text_table(headers, table_rows))
        print()
        print(text_table(micro_headers, micro))
        report_lines(notes)
        if args.markdown:
            write_markdown(
                args.markdown,
                title="git theta similar: N LoRA specialists",
                command=command_line(argv),
                table=markdown_table(headers, table_rows)
                + "\n\n"
                + markdown_table(micro_headers, micro),
                about=__doc__.split("\n\n", 2)[2],
                lines=notes,
                machine=machine_info(sandbox, sources),
                tag=TAG,
            )
    return 0


def _zip(*dicts: dict) -> list[tuple]:
    return [(k, *(d[k] for d in dicts)) for k in dicts[0]]


if __name__ == "__main__":
    raise SystemExit(main())
