"""What taking each delta version against the snapshot (star) costs in storage against a chain
(each version against the one before), on training-like sequences of checkpoints.

For every checkpoint after the first: the store growth ÷ the checkpoint's raw bytes, as

- dense: every changed tensor stored whole (today's dense policy),
- chain: `auto`'s choice (dense, sparse or delta) against the previous version: what
  git-theta wrote before the star (a checkout then decodes k + 1 objects),
- star:  what `git theta add` with `theta.updateType auto` writes now (git_theta/updates/
  snapshot.py, run on a real object store): one update against the snapshot, a new snapshot
  when dense is estimated smallest; at most 2 objects per checkout,

and the checkout's objects per tensor at the end (maximum over tensors).

Sequences:
- synthetic: `--size` bytes of tensors of N(0, 0.02), each checkpoint adding N(0, r * 0.02);
- mlp: a 4-layer MLP (about 2.4 M parameters) trained with Adam on synthetic regression data,
  a checkpoint every `--every` steps (torch on CPU), in F32 and rounded to BF16.

    python benchmarks/bench_delta_topology.py --versions 9 --every 25
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_delta import MIB, WEIGHT_STD, parse_size, size_of, to_dtype  # noqa: E402

from git_theta.metadata import ParamEntry  # noqa: E402
from git_theta.store import ObjectStore, encode_object  # noqa: E402
from git_theta.tensor import RawTensor, content_hash  # noqa: E402
from git_theta.updates.choice import smallest  # noqa: E402
from git_theta.updates.delta import delta_bytes, delta_object  # noqa: E402
from git_theta.updates.policy import CleanReport, UpdatePolicy, Updater  # noqa: E402
from git_theta.updates.sparse import changed_indices  # noqa: E402

Checkpoint = dict[str, RawTensor]


def _refs(entry: ParamEntry) -> Iterable[tuple[str, int]]:
    yield entry.object.oid, entry.object.size
    for record in entry.updates:
        for key in ("object", "indices", "values"):
            if key in record:
                yield record[key]["oid"], record[key]["size"]


def _chain_bytes(before: RawTensor, after: RawTensor) -> int:
    """Stored bytes of `after` as the earlier `auto` chose against the previous version."""
    choice = smallest(before, after)
    if choice == "delta":
        return size_of(delta_object(delta_bytes(before, after)))
    if choice == "sparse":
        idx = changed_indices(before, after)
        itemsize = len(after.data) // max(int(np.prod(after.shape)), 1)
        words = np.frombuffer(after.data, {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}[itemsize])
        values = RawTensor(after.dtype, (idx.size,), words[idx].tobytes())
        index = RawTensor("I32", (idx.size,), idx.astype("<i4").tobytes())
        return size_of(encode_object(index)) + size_of(encode_object(values))
    return size_of(encode_object(after))


def growth(label: str, checkpoints: list[Checkpoint]) -> None:
    """One table row per checkpoint after the first, then the mean."""
    with tempfile.TemporaryDirectory(prefix="bench-topology-") as tmp:
        store = ObjectStore(Path(tmp) / "objects")
        updater = Updater(UpdatePolicy(kind="auto"), "bench", store, CleanReport())
        entries: dict[str, ParamEntry] = {}
        chain_links: dict[str, int] = {}
        seen: set[str] = set()
        for name, t in checkpoints[0].items():
            entries[name] = ParamEntry(
                t.dtype, t.shape, content_hash(t.data), store.put(encode_object(t))
            )
            seen.add(entries[name].object.oid)
            chain_links[name] = 0
        sums = {"dense": 0.0, "chain": 0.0, "star": 0.0}
        for k in range(1, len(checkpoints)):
            raw = 0
            row = dict.fromkeys(sums, 0)
            for name, after in checkpoints[k].items():
                before = checkpoints[k - 1][name]
                raw += len(after.data)
                if bytes(before.data) == bytes(after.data):
                    continue
                row["dense"] += size_of(encode_object(after))
                chain = _chain_bytes(before, after)
                row["chain"] += chain
                chain_links[name] = (
                    0 if chain == size_of(encode_object(after)) else chain_links[name] + 1
                )
                digest = content_hash(after.data)
                entry = updater.encode(name, after, entries[name], digest)
                if entry is None:
                    ref = store.put(encode_object(after, digest=digest))
                    entry = ParamEntry(after.dtype, after.shape, digest, ref)
                for oid, size in _refs(entry):
                    if oid not in seen:
                        seen.add(oid)
                        row["star"] += size
                entries[name] = entry
            cells = " | ".join(f"{row[c] / raw:.3f}" for c in sums)
            print(f"| {label} {k} | {cells} |", flush=True)
            for c in sums:
                sums[c] += row[c] / raw
        n = len(checkpoints) - 1
        star_objects = 1 + max(len(e.updates) for e in entries.values())
        print(
            f"| **{label} mean** | "
            + " | ".join(f"**{sums[c] / n:.3f}**" for c in sums)
            + f" | (objects per checkout at the end: chain {1 + max(chain_links.values())}, "
            f"star {star_objects})",
            flush=True,
        )


def synthetic(size: int, versions: int, r: float, dtype: str) -> list[Checkpoint]:
    numel = min(size, 16 * MIB) // 4
    rng = np.random.default_rng(0)
    weights = [
        rng.standard_normal(numel, dtype=np.float32) * WEIGHT_STD
        for _ in range(max(1, size // (numel * 4)))
    ]
    out = []
    for _ in range(versions):
        out.append(
            {f"w{i}": RawTensor(dtype, (numel,), to_dtype(w, dtype)) for i, w in enumerate(weights)}
        )
        weights = [
            w + rng.standard_normal(numel, dtype=np.float32) * (r * WEIGHT_STD) for w in weights
        ]
    return out


def mlp(versions: int, every: int, lr: float) -> tuple[list[Checkpoint], list[Checkpoint]]:
    """Checkpoints (F32, BF16) of an MLP trained with Adam on y = tanh(x A) B + noise."""
    import torch

    torch.manual_seed(0)
    dims = (512, 1024, 1024, 512)
    layers: list[torch.nn.Module] = []
    for a, b in zip(dims, dims[1:], strict=False):
        layers += [torch.nn.Linear(a, b), torch.nn.LayerNorm(b), torch.nn.GELU()]
    model = torch.nn.Sequential(*layers[:-2])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    teacher_a = torch.randn(512, 256) / 16
    teacher_b = torch.randn(256, 512) / 16
    f32: list[Checkpoint] = []
    bf16: list[Checkpoint] = []

    def snapshot() -> None:
        state = {k: v.detach().numpy().astype("<f4") for k, v in model.state_dict().items()}
        f32.append({k: RawTensor("F32", v.shape, v.tobytes()) for k, v in state.items()})
        bf16.append(
            {
                k: RawTensor("BF16", v.shape, to_dtype(v.reshape(-1), "BF16"))
                for k, v in state.items()
            }
        )

    snapshot()
    step = 0
    while len(f32) < versions:
        x = torch.randn(64, 512)
        y = torch.tanh(x @ teacher_a) @ teacher_b + 0.01 * torch.randn(64, 512)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % every == 0:
            snapshot()
    print(f"(mlp: {step} Adam steps at lr {lr:g}, final loss {loss.item():.4f})")
    return f32, bf16


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="64MiB", help="bytes per synthetic checkpoint")
    ap.add_argument("--versions", type=int, default=9, help="checkpoints per sequence")
    ap.add_argument("--rate", type=float, default=1e-3, help="synthetic noise per checkpoint")
    ap.add_argument("--every", type=int, default=25, help="Adam steps between MLP checkpoints")
    ap.add_argument("--lr", type=float, default=1e-4, help="the MLP's Adam learning rate")
    args = ap.parse_args()
    print("store growth per checkpoint / raw checkpoint bytes")
    print("| checkpoint | dense | chain | star |")
    print("|---|---|---|---|")
    size = parse_size(args.size)
    for dtype in ("F32", "BF16"):
        growth(
            f"synthetic {dtype} r={args.rate:g}", synthetic(size, args.versions, args.rate, dtype)
        )
    f32, bf16 = mlp(args.versions, args.every, args.lr)
    growth("MLP F32", f32)
    growth("MLP BF16", bf16)


if __name__ == "__main__":
    main()
