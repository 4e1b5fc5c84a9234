"""Choosing and combining specialists, end to end on CPU (docs/merges.md).

A small MLP is pre-trained on a mixture of regression tasks and committed on `main`. Four
specialists are LoRA fine-tunes (real PEFT, real Adam steps) on four tasks, each committed as
its LoRA factors on a branch. A fifth task gets a short fine-tune of its own; `git theta
similar` ranks the four by how their task vectors point compared with its, and `git theta
merge-models --select 2` merges the two closest (their mean task vector, lambda=0.5;
staged, so the sum stays low-rank). The
merged model is evaluated on every task.

The tasks: y = tanh(x @ W_k) with W_k = a mix of four "skills" S_1..S_4; the fifth task is
mostly skills 1 and 2, so the specialists trained on tasks 1 and 2 should rank first.

Run from anywhere with git-theta, torch and peft installed:

    python examples/specialists.py [WORKDIR] [--quick]

It takes well under a minute on 2 cores; `--quick` (what tests/end_to_end/test_examples.py
runs) takes fewer optimiser steps of the same training; the same two specialists rank first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

DIM, OUT, HIDDEN = 16, 8, 64
MIXES = {  # task -> weights of the four skills
    "task-1": (1.0, 0.1, 0.0, 0.0),
    "task-2": (0.1, 1.0, 0.0, 0.1),
    "task-3": (0.0, 0.0, 1.0, 0.2),
    "task-4": (0.0, 0.1, 0.2, 1.0),
    "new-task": (0.7, 0.6, 0.0, 0.0),
}
SKILLS = torch.randn(4, DIM, OUT, generator=torch.Generator().manual_seed(0))
# Optimiser steps: pre-training, each specialist, the new task's small update.
STEPS = {"full": (400, 200, 40), "quick": (150, 80, 20)}


def batch(task: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    w = sum(c * s for c, s in zip(MIXES[task], SKILLS, strict=True))
    return x, torch.tanh(x @ w / 2)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, OUT)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def train(model: nn.Module, tasks: list[str], steps: int, lr: float, seed: int) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for step in range(steps):
        task = tasks[step % len(tasks)]
        x, y = batch(task, 128, seed * 100_000 + step)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def evaluate(state: dict[str, torch.Tensor]) -> dict[str, float]:
    model = MLP()
    model.load_state_dict(state)
    with torch.no_grad():
        return {
            t: float(nn.functional.mse_loss(model(x), y))
            for t in MIXES
            for x, y in [batch(t, 2048, 999)]
        }


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"git {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def lora_specialist(repo: Path, base: dict[str, torch.Tensor], task: str, steps: int) -> None:
    """Fine-tune a LoRA on `task` from `base`, commit it on branch `task` as LoRA factors."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(len(task) + steps)
    model = MLP()
    model.load_state_dict(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["layers.0", "layers.1", "layers.2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, config)
        train(peft_model, [task], steps, 1e-2, seed=sum(task.encode()))
        adapter = repo.parent / f"adapter-{task}"
        peft_model.save_pretrained(str(adapter))
        merged = {k: v.contiguous() for k, v in peft_model.merge_and_unload().state_dict().items()}
    git(repo, "checkout", "-q", "-b", task, "main")
    save_file(merged, str(repo / "model.safetensors"))
    git(repo, "theta", "add", "model.safetensors", "--update-type", "low-rank",
        "--update-path", str(adapter))  # fmt: skip
    git(repo, "commit", "-q", "-m", f"LoRA specialist for {task}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", nargs="?", type=Path, help="empty or new directory")
    parser.add_argument("--quick", action="store_true", help="fewer optimiser steps")
    args = parser.parse_args()
    pretrain, specialist, small = STEPS["quick" if args.quick else "full"]
    # The model is tiny: torch's intra-op threads only contend with each other (and with
    # anything else on the machine); one thread trains ~15x faster here on 2 shared cores.
    torch.set_num_threads(1)
    start = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="specialists-"))
    repo = work / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Example")
    git(repo, "config", "user.email", "example@example.com")
    git(repo, "theta", "install", "--local")
    git(repo, "theta", "track", "*.safetensors")

    torch.manual_seed(0)
    base_model = MLP()
    train(base_model, [t for t in MIXES if t != "new-task"], pretrain, 3e-3, seed=1)
    base = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
    save_file(base, str(repo / "model.safetensors"))
    git(repo, "add", ".gitattributes", "model.safetensors")
    git(repo, "commit", "-q", "-m", "pre-trained base")

    for task in ("task-1", "task-2", "task-3", "task-4"):
        lora_specialist(repo, base, task, specialist)
    lora_specialist(repo, base, "new-task", small)  # a small update for the new task

    print(git(repo, "theta", "similar", "new-task", "--branches"), end="")
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "-b", "merged")
    picked = git(
        repo, "theta", "merge-models", "--select", "2", "--similar-to", "new-task",
        "-s", "task-arithmetic", "--option", "lambda=0.5", "--stage", "-o", "model.safetensors",
        "task-1", "task-2", "task-3", "task-4",
    )  # fmt: skip
    print(picked, end="")
    git(repo, "commit", "-q", "-m", "the two specialists closest to new-task, added")

    def at(rev: str) -> dict[str, torch.Tensor]:
        git(repo, "checkout", "-q", rev)
        return load_file(str(repo / "model.safetensors"))

    rows = {rev: evaluate(at(rev)) for rev in ("main", "task-1", "task-2", "new-task", "merged")}
    print(f"\n{'MSE on':<10}" + "".join(f"{t:>10}" for t in MIXES))
    for rev, scores in rows.items():
        print(f"{rev:<10}" + "".join(f"{scores[t]:>10.4f}" for t in MIXES))
    print(f"\n{work}: done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
