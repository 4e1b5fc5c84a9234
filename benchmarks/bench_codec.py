"""Benchmark git-theta's object codec against ZipNN on single tensors, one thread each.

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_codec.py [--size-gib 1.0] [--tensors 200] [--dtypes BF16,F32,F16]
                                     [--row-sigma 0.5] [--max-mb 0] [--repeat 7]
                                     [--markdown OUT.md]

The tensors are the largest tensor of each dtype in bench_filter.py's synthetic checkpoint
(harness.tensor_values), each row then scaled by its own log-normal factor (`--row-sigma`,
0 for none), as trained layers' rows differ in scale. For each tensor, git-theta's
`encode_object` / `read_object` and ZipNN's `compress` / `decompress` (threads=1) take turns,
`--repeat` times, interleaved. MB/s are of raw tensor bytes (1 MB = 10^6 bytes); the ratio is
encoded size over raw size. git-theta's encode includes the xxh3 content hash it puts in the
header and its decode includes checking it; ZipNN computes no hash. Both decoders return a
fresh buffer, as their APIs do; git-theta's is a new mapping (a page fault per 4 KiB, ~0.44 ms
per MB on the reference VM), while ZipNN's comes from malloc, which reuses freed memory below
32 MiB. "Decode, reused buffer" is git-theta decoding into a buffer handed back to a BufferPool
after each run, as checkout does; the minor page faults per run are printed under the table.

ZipNN (pip `zipnn`, the `bench` extra) is optional: without it the script measures git-theta
alone and says so. Install it in a virtualenv that sees this interpreter's packages:

    python -m venv --system-site-packages /work/bench-venvs/zipnn
    /work/bench-venvs/zipnn/bin/pip install zipnn
    PYTHONPATH=$PWD /work/bench-venvs/zipnn/bin/python benchmarks/bench_codec.py
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402  (a sibling script, not a package)
    DTYPE_SIZES,
    GIB,
    MB,
    TensorPlan,
    command_line,
    interleaved,
    load_average,
    log,
    markdown_table,
    plan_checkpoint,
    runs_note,
    spread,
    tensor_values,
    text_table,
    to_dtype,
    write_markdown,
)
from harness import median as median_of  # noqa: E402

from git_theta.store.serialize import encode_object, read_object  # noqa: E402
from git_theta.tensor import BufferPool, RawTensor  # noqa: E402

TAG = "codec"
ZIPNN_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


class Codec(NamedTuple):
    name: str
    encode: Callable[[], bytes | int]  # the encoded bytes, or their count
    decode: Callable[[], object]
    # Decoding into a buffer handed back after each run (how checkout reuses memory), if the
    # codec's API allows it.
    decode_reused: Callable[[], object] | None = None


def pick_tensors(size_gib: float, n_tensors: int, dtypes: Sequence[str]) -> list[TensorPlan]:
    plans = plan_checkpoint(int(size_gib * GIB), n_tensors)
    picked = []
    for dtype in dtypes:
        of_dtype = [p for p in plans if p.dtype == dtype]
        if not of_dtype:
            raise SystemExit(f"{TAG}: the checkpoint has no {dtype} tensor")
        picked.append(max(of_dtype, key=lambda p: p.nbytes))
    return picked


def tensor_bytes(
    plans: list[TensorPlan], plan: TensorPlan, seed: int, sigma: float, max_bytes: int
) -> tuple[tuple[int, ...], bytes]:
    """The shape and bytes of `plan`, cut to its first rows that fit `max_bytes` (0: all)."""
    values = np.concatenate(list(tensor_values(plan, seed, plans.index(plan))))
    rows = values.reshape(plan.shape[0], -1)
    if max_bytes:
        rows = rows[: max(1, max_bytes // (rows.shape[1] * DTYPE_SIZES[plan.dtype]))]
    if sigma:
        scales = np.random.default_rng([seed, 7]).lognormal(0.0, sigma, size=(len(rows), 1))
        rows *= scales.astype(np.float32)
    return (len(rows), *plan.shape[1:]), to_dtype(rows.reshape(-1), plan.dtype).tobytes()


def theta_codec(dtype: str, shape: tuple[int, ...], raw: bytes) -> Codec:
    tensor = RawTensor(dtype, shape, raw)
    blob = b"".join(bytes(c) for c in encode_object(tensor))

    def encode() -> int:  # consumes each chunk as a writer would, without copying it
        return sum(len(c) for c in encode_object(tensor))

    def decode() -> memoryview:
        return read_object(io.BytesIO(blob), hash_all=False).tensor.data

    pool = BufferPool(limit=2 * len(raw))

    def decode_reused() -> None:
        pool.give(read_object(io.BytesIO(blob), buffers=pool, hash_all=False).tensor.data)

    if bytes(decode()) != raw:
        raise SystemExit(f"{TAG}: git-theta's round trip of {dtype} differs")
    decode_reused()  # the pool now holds a buffer: every timed run reuses it
    return Codec("git-theta", encode, decode, decode_reused)


def zipnn_codec(dtype: str, raw: bytes) -> Codec | str:
    """ZipNN on `raw`, or why not. F32 and F16 go in as numpy arrays, BF16 as a torch tensor:
    ZipNN 0.5.4's byte input reorders float bits on compression without undoing it."""
    try:
        import zipnn
    except ImportError:
        return "ZipNN is not importable here (pip install zipnn; see benchmarks/README.md)"
    if dtype == "BF16":
        try:
            import torch
        except ImportError:
            return "ZipNN's BF16 needs torch, which is not importable here"
        data = torch.from_numpy(np.frombuffer(raw, "<i2").copy()).view(torch.bfloat16)
        fmt = "torch"
    else:
        data = np.frombuffer(raw, {"F32": "<f4", "F16": "<f2"}[dtype])
        fmt = "numpy"
    codec = zipnn.ZipNN(input_format=fmt, threads=1)
    blob = bytes(codec.compress(data))

    def raw_of(out: object) -> bytes:
        if fmt == "torch":
            return out.view(torch.int16).numpy().tobytes()  # type: ignore[attr-defined]
        return out.tobytes()  # type: ignore[attr-defined]

    if raw_of(codec.decompress(blob)) != raw:
        return f"ZipNN's round trip of {dtype} differs"
    return Codec("ZipNN", lambda: codec.compress(data), lambda: codec.decompress(blob))


class Sample(NamedTuple):
    wall: float
    cpu: float
    faults: int  # minor page faults: what filling fresh memory costs


def timed(fn: Callable[[], object]) -> Sample:
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Sample(
        time.perf_counter() - wall,
        time.process_time() - cpu,
        resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
    )


def encoded_size(codec: Codec) -> int:
    out = codec.encode()
    return out if isinstance(out, int) else len(out)


def measure(codecs: list[Codec], repeat: int) -> dict[tuple[str, str], list[Sample]]:
    samples: dict[tuple[str, str], list[Sample]] = {}
    steps = [
        (c, op) for c in codecs for op in ("encode", "decode", "decode_reused") if getattr(c, op)
    ]
    for _run, (codec, op) in interleaved(repeat, steps):
        samples.setdefault((codec.name, op), []).append(timed(getattr(codec, op)))
    return samples


def rate(nbytes: int, seconds: Sequence[float]) -> list[float]:
    return [nbytes / s / MB for s in seconds]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--tensors", type=int, default=200)
    parser.add_argument("--dtypes", default="BF16,F32,F16")
    parser.add_argument("--row-sigma", type=float, default=0.5)
    # Below 32 MiB malloc reuses freed memory, so ZipNN's output costs no page faults either.
    parser.add_argument("--max-mb", type=float, default=0, help="only the first rows, 0 = all")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    plans = plan_checkpoint(int(args.size_gib * GIB), args.tensors)
    rows, notes = [], []
    loads = [load_average()]
    for plan in pick_tensors(args.size_gib, args.tensors, args.dtypes.split(",")):
        shape, raw = tensor_bytes(plans, plan, args.seed, args.row_sigma, int(args.max_mb * MB))
        log(f"{plan.name}: {plan.dtype} {list(shape)}, {len(raw) / MB:.0f} MB", tag=TAG)
        codecs = [theta_codec(plan.dtype, shape, raw)]
        zipnn = zipnn_codec(plan.dtype, raw)
        if isinstance(zipnn, str):
            notes.append(f"{plan.dtype}: {zipnn}; git-theta alone.")
            log(zipnn, tag=TAG)
        else:
            codecs.append(zipnn)
        samples = measure(codecs, args.repeat)
        loads.append(load_average())
        for codec in codecs:
            rows.append([f"{plan.dtype} {plan.name} ({len(raw) / MB:.0f} MB)", codec.name])
            for op, clock in (
                ("encode", "wall"),
                ("decode", "wall"),
                ("decode", "cpu"),
                ("decode_reused", "wall"),
                ("decode_reused", "cpu"),
            ):
                runs = samples.get((codec.name, op))
                rows[-1].append(
                    spread(
                        rate(len(raw), [getattr(s, clock) for s in runs]), "{:.0f}".format, "MB/s"
                    )
                    if runs
                    else "n/a"
                )
            rows[-1].append(f"{encoded_size(codec) / len(raw):.3f}")
            faults = [
                f"{op} {int(median_of([x.faults for x in samples[codec.name, op]]))}"
                for op in ("decode", "decode_reused")
                if (codec.name, op) in samples
            ]
            notes.append(
                f"{plan.dtype} {codec.name}: minor page faults per run: {', '.join(faults)}."
            )
    headers = [
        "tensor",
        "codec",
        "encode (wall)",
        "decode (wall)",
        "decode (CPU)",
        "decode, reused buffer (wall)",
        "decode, reused buffer (CPU)",
        "ratio",
    ]

    notes += [
        runs_note(args.repeat),
        "MB/s of raw tensor bytes on one thread; CPU = the process's user+sys time, which "
        "other load on the machine inflates less than wall time.",
        f"Load average (1/5/15 min) before and after each tensor: {' → '.join(loads)}.",
        f"Rows scaled by log-normal(0, {args.row_sigma}) factors; seed {args.seed}.",
    ]
    print(text_table(headers, rows))
    for line in notes:
        print(line)
    if args.markdown:
        write_markdown(
            args.markdown,
            title="git-theta's object codec vs ZipNN, one thread",
            command=command_line(argv),
            table=markdown_table(headers, rows),
            about=__doc__.split("\n\n")[2].replace("\n", " "),
            lines=notes,
            machine=[("CPUs", str(os.cpu_count())), ("python", sys.version.split()[0])],
            when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            tag=TAG,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
