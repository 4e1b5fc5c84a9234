"""Make the mergekit reference fixtures in tests/fixtures/mergekit/ (issue 5, "Correctness").

mergekit 0.1.5 itself computes the expected merges: for every case this script writes a
mergekit-pytorch config (the same YAML `mergekit-pytorch CONFIG OUT` reads) and runs that
command's own code in this process on small safetensors models it builds here. It saves

    inputs.safetensors   "{DTYPE}/{model}/{tensor}" for model in base, ft1, ft2, ft3
    outputs.safetensors  "{case id}/{tensor}", exactly the tensors mergekit wrote
    manifest.json        the versions that made them, the tensors, and each case's config

git-theta never imports mergekit: tests/unit/test_mergekit_reference.py reads these files and
maps each config to a git-theta strategy and options. Every bfloat16 case runs mergekit with
`dtype: float32` and `out_dtype: bfloat16`: git-theta computes in float32 and rounds once,
which is that setting (mergekit's default would compute task arithmetic and TIES in bf16).

It needs mergekit, which is not a git-theta dependency, in a virtualenv of its own outside the
repository (torch first, from the machine's wheels, so pip takes no CUDA build):

    python3 -m venv /work/mergekit-venv
    /work/mergekit-venv/bin/pip install torch==2.13.0
    /work/mergekit-venv/bin/pip install mergekit==0.1.5
    /work/mergekit-venv/bin/python scripts/mergekit/make_fixtures.py          # rewrite fixtures
    /work/mergekit-venv/bin/python scripts/mergekit/make_fixtures.py --check  # verify them

The output is deterministic: `--check` makes everything again in a temporary directory and
exits 1 unless the tensors and the manifest's cases equal the committed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

# mergekit prints progress bars for every case; tqdm reads this when it is first imported.
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

MERGEKIT_VERSION = "0.1.5"
SEED = 20240505
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "mergekit"
MODELS = ("base", "ft1", "ft2", "ft3")
# Every density a case uses: the inputs are adjusted so that no magnitude trim at these
# densities meets a tie at its cut (mergekit's torch.argsort is not stable, so a tie would
# make its choice an accident of the sort).
DENSITIES = (0.2, 0.5, 0.7)
# mergekit's slerp threshold; the inputs keep |cos| this far from it, so float32 (mergekit)
# and float64 (git-theta) agree on which branch to take.
SLERP_THRESHOLD = 0.9995
SLERP_MARGIN = 1e-4


@dataclass(frozen=True)
class TensorDef:
    """One tensor of every model: fine-tuned = base + scale * N(0, 1) (before dtype rounding).

    `scale` sets how far apart the models are, which picks slerp's branch: 0.01 is
    near-colinear (linear fallback), 0.3 and 1.0 give real spherical interpolation.
    `flip`: ft2 is about -ft1 (antipodal, the other side of slerp's fallback).
    """

    shape: tuple[int, ...]
    scale: float
    flip: bool = False


TENSORS: dict[str, TensorDef] = {
    "attn.weight": TensorDef((16, 24), 0.3),
    "mlp.weight": TensorDef((4, 5, 6), 1.0),
    "norm.bias": TensorDef((24,), 0.01),
    # 3 entries: density 0.2 keeps max(1, int(0.6)) = 1 of them (mergekit's at-least-one rule).
    "head.bias": TensorDef((3,), 0.5),
    "flip.weight": TensorDef((6, 4), 0.3, flip=True),
}
DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16}


@dataclass(frozen=True)
class Case:
    """One mergekit-pytorch run. `config` is its YAML with model names for paths."""

    id: str
    dtype: str
    config: dict[str, Any]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _models(names: tuple[str, ...], **per_model: tuple[float, ...]) -> list[dict[str, Any]]:
    out = []
    for i, name in enumerate(names):
        params = {key: values[i] for key, values in per_model.items()}
        out.append({"model": name, "parameters": params} if params else {"model": name})
    return out


def _specs() -> Iterator[tuple[str, dict[str, Any], str]]:
    """(case stem, config without dtype keys, note) for every setting compared."""
    ft2, ft3 = ("ft1", "ft2"), ("ft1", "ft2", "ft3")
    yield "linear-equal", {"merge_method": "linear", "models": _models(ft2, weight=(1.0, 1.0))}, ""
    yield (
        "linear-2to1",
        {"merge_method": "linear", "models": _models(ft2, weight=(2.0, 1.0))},
        ("weights not summing to 1: mergekit's normalize (default true) divides by their sum"),
    )
    yield (
        "linear-3way",
        {
            "merge_method": "linear",
            "models": _models(ft3, weight=(0.5, 0.3, 0.2)),
        },
        "",
    )
    yield (
        "task_arithmetic-equal",
        {
            "merge_method": "task_arithmetic",
            "base_model": "base",
            "models": _models(ft2, weight=(1.0, 1.0)),
        },
        "",
    )
    yield (
        "task_arithmetic-3way-lambda0.8",
        {
            "merge_method": "task_arithmetic",
            "base_model": "base",
            "models": _models(ft3, weight=(0.5, 0.3, 0.7)),
            "parameters": {"lambda": 0.8},
        },
        "",
    )
    yield (
        "ties-d0.5",
        {
            "merge_method": "ties",
            "base_model": "base",
            "models": _models(ft2, weight=(1.0, 1.0), density=(0.5, 0.5)),
        },
        "",
    )
    yield (
        "ties-3way-d0.2-lambda1.2",
        {
            "merge_method": "ties",
            "base_model": "base",
            "models": _models(ft3, weight=(0.6, 0.3, 0.5), density=(0.2, 0.2, 0.2)),
            "parameters": {"lambda": 1.2},
        },
        "head.bias has 3 entries: density 0.2 keeps max(1, int(0.6)) = 1 (mergekit's rule)",
    )
    yield (
        "ties-d1.0-weighted",
        {
            "merge_method": "ties",
            "base_model": "base",
            "models": _models(ft2, weight=(1.0, 0.5), density=(1.0, 1.0)),
        },
        "no trim: sign election and disjoint mean only",
    )
    yield (
        "ties-d0.7-normalize-lambda0.5",
        {
            "merge_method": "ties",
            "base_model": "base",
            "models": _models(ft2, weight=(0.3, 0.7), density=(0.7, 0.7)),
            "parameters": {"lambda": 0.5, "normalize": True},
        },
        "",
    )
    for t in (0.3, 0.75):
        yield (
            f"slerp-t{t}",
            {
                "merge_method": "slerp",
                "base_model": "ft1",
                "models": _models(ft2),
                "parameters": {"t": t},
            },
            "mergekit's t=0 is base_model (ft1), t=1 the other model (ft2)",
        )
    # DARE's drop is random (torch.bernoulli on torch's global generator) and cannot be
    # reproduced by git-theta's seeded numpy generator; at density 1 nothing is dropped, so
    # these cases check DARE's weighting, election and normalize defaults only.
    yield (
        "dare_linear-d1.0",
        {
            "merge_method": "dare_linear",
            "base_model": "base",
            "models": _models(ft2, weight=(0.5, 0.7), density=(1.0, 1.0)),
        },
        "density 1: no random drop",
    )
    yield (
        "dare_ties-d1.0",
        {
            "merge_method": "dare_ties",
            "base_model": "base",
            "models": _models(ft2, weight=(0.5, 0.7), density=(1.0, 1.0)),
        },
        "density 1: no random drop; mergekit's (and git-theta's) dare_ties default is "
        "normalize: false",
    )
    yield (
        "dare_ties-d1.0-normalize",
        {
            "merge_method": "dare_ties",
            "base_model": "base",
            "models": _models(ft2, weight=(0.5, 0.7), density=(1.0, 1.0)),
            "parameters": {"normalize": True},
        },
        "density 1: no random drop",
    )


def cases() -> list[Case]:
    out = []
    for stem, config, note in _specs():
        out.append(Case(f"{stem}.F32", "F32", config, note))
        # git-theta computes in float32 and rounds to bf16 at the end: mergekit's dtype/out_dtype.
        f32_compute = {**config, "dtype": "float32", "out_dtype": "bfloat16"}
        out.append(Case(f"{stem}.BF16", "BF16", f32_compute, note))
    # No case keeps mergekit's default dtype for bf16 inputs: task-arithmetic methods then
    # compute in bf16 itself, rounding every step, which is not git-theta's convention
    # (docs/merges.md, "Strategies"); `dtype: float32` is.
    return out


# ---- inputs -----------------------------------------------------------------------------


def make_inputs() -> dict[str, dict[str, dict[str, torch.Tensor]]]:
    """{dtype: {model: {tensor: values}}}, deterministic from SEED."""
    out: dict[str, dict[str, dict[str, torch.Tensor]]] = {
        d: {m: {} for m in MODELS} for d in DTYPES
    }
    for index, (name, spec) in enumerate(TENSORS.items()):
        rng = np.random.default_rng([SEED, index])
        base = rng.standard_normal(spec.shape).astype(np.float32)
        fts = [
            base + spec.scale * rng.standard_normal(spec.shape).astype(np.float32) for _ in range(3)
        ]
        if spec.flip:
            fts[1] = -fts[0] + 0.01 * rng.standard_normal(spec.shape).astype(np.float32)
        for dname, dtype in DTYPES.items():
            values = [torch.from_numpy(v).to(dtype) for v in (base, *fts)]
            values[1:] = [_untie(values[0], ft) for ft in values[1:]]
            for model, v in zip(MODELS, values, strict=True):
                out[dname][model][name] = v.contiguous()
            _check_slerp(name, values[1], values[2])
    return out


def _untie(base: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """`ft` with entries nudged one ulp away from `base` until no magnitude trim at DENSITIES
    meets a tie at its cut (|delta| computed in float32, as both implementations do)."""
    ft = ft.clone()
    flat = ft.view(-1)
    for _ in range(10_000):
        mag = (ft.float() - base.float()).abs().reshape(-1)
        order = torch.sort(mag, descending=True, stable=True)
        tied = None
        for density in DENSITIES:
            k = max(1, int(density * mag.numel()))
            if k < mag.numel() and order.values[k - 1] == order.values[k] != 0:
                tied = int(order.indices[k])
                break
        if tied is None:
            return ft
        away = torch.sign(flat[tied].float() - base.reshape(-1)[tied].float())
        flat[tied] = torch.nextafter(flat[tied], flat[tied] + away.to(flat.dtype))
    raise SystemExit("make_fixtures: could not remove ties at the trim cut")


def _check_slerp(name: str, v0: torch.Tensor, v1: torch.Tensor) -> None:
    a, b = v0.double().reshape(-1), v1.double().reshape(-1)
    cos = float(a @ b / (a.norm() * b.norm()))
    if abs(abs(cos) - SLERP_THRESHOLD) < SLERP_MARGIN:
        raise SystemExit(f"make_fixtures: {name}: cos {cos} too close to slerp's threshold")


# ---- running mergekit -------------------------------------------------------------------


def run_mergekit(config: dict[str, Any], model_dir: Path, work: Path) -> dict[str, torch.Tensor]:
    """The tensors `mergekit-pytorch` writes for `config`, run in this process."""
    from mergekit.scripts.merge_raw_pytorch import main as mergekit_pytorch

    def path(model: str) -> str:
        return str(model_dir / f"{model}.safetensors")

    resolved = dict(config)
    resolved["models"] = [{**m, "model": path(m["model"])} for m in config["models"]]
    if "base_model" in config:
        resolved["base_model"] = path(config["base_model"])
    work.mkdir(parents=True)
    config_path, out_dir = work / "config.yml", work / "out"
    config_path.write_text(yaml.safe_dump(resolved, sort_keys=False))
    mergekit_pytorch.main(args=[str(config_path), str(out_dir), "--quiet"], standalone_mode=False)
    merged: dict[str, torch.Tensor] = {}
    for shard in sorted(out_dir.glob("*.safetensors")):
        merged.update(load_file(shard))
    return merged


def versions() -> dict[str, str]:
    return {
        "mergekit": version("mergekit"),
        "torch": torch.__version__,
        "safetensors": version("safetensors"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # one summation order, whatever the machine
    inputs = make_inputs()
    flat_inputs = {
        f"{d}/{m}/{t}": v
        for d, models in inputs.items()
        for m, ts in models.items()
        for t, v in ts.items()
    }
    outputs: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory(prefix="mergekit-fixtures-") as tmp:
        root = Path(tmp)
        for d, models in inputs.items():
            (root / d).mkdir()
            for m, ts in models.items():
                save_file(ts, root / d / f"{m}.safetensors")
        for case in cases():
            print(f"[make_fixtures] {case.id}", file=sys.stderr)
            merged = run_mergekit(case.config, root / case.dtype, root / "runs" / case.id)
            if sorted(merged) != sorted(TENSORS):
                raise SystemExit(f"make_fixtures: {case.id}: mergekit wrote {sorted(merged)}")
            want = DTYPES[case.dtype]
            for t, v in merged.items():
                if v.dtype != want or tuple(v.shape) != TENSORS[t].shape:
                    raise SystemExit(f"make_fixtures: {case.id}/{t}: got {v.dtype} {list(v.shape)}")
                outputs[f"{case.id}/{t}"] = v.contiguous()
    save_file(flat_inputs, out / "inputs.safetensors", metadata={"generator": _GENERATOR})
    save_file(outputs, out / "outputs.safetensors", metadata={"generator": _GENERATOR})
    manifest = {
        "generator": _GENERATOR,
        "command": "mergekit-pytorch CONFIG OUT (its click command, run in process)",
        "versions": versions(),
        "seed": SEED,
        "models": list(MODELS),
        "inputs": {"file": "inputs.safetensors", "key": "{dtype}/{model}/{tensor}"},
        "outputs": {"file": "outputs.safetensors", "key": "{case}/{tensor}"},
        "tensors": {
            name: {"shape": list(t.shape), "scale": t.scale, "flip": t.flip}
            for name, t in TENSORS.items()
        },
        "cases": [
            {"id": c.id, "dtype": c.dtype, "config": c.config, "note": c.note} for c in cases()
        ],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name in ("inputs.safetensors", "outputs.safetensors", "manifest.json"):
        (out / name).chmod(0o644)


_GENERATOR = "scripts/mergekit/make_fixtures.py"


def check(committed: Path) -> int:
    """0 when a fresh run gives the committed tensors and cases, else 1 (with the differences)."""
    with tempfile.TemporaryDirectory(prefix="mergekit-fixtures-check-") as tmp:
        fresh = Path(tmp)
        generate(fresh)
        problems = []
        for name in ("inputs.safetensors", "outputs.safetensors"):
            a, b = load_file(committed / name), load_file(fresh / name)
            if sorted(a) != sorted(b):
                problems.append(f"{name}: tensor names differ")
                continue
            problems += [
                f"{name}: {k} differs"
                for k in sorted(a)
                if not torch.equal(a[k].view(-1), b[k].view(-1))
            ]
        old = json.loads((committed / "manifest.json").read_text())
        new = json.loads((fresh / "manifest.json").read_text())
        if old["cases"] != new["cases"] or old["tensors"] != new["tensors"]:
            problems.append("manifest.json: cases or tensors differ")
        if old["versions"] != new["versions"]:
            print(f"versions differ: {old['versions']} vs {new['versions']}", file=sys.stderr)
    for p in problems:
        print(p, file=sys.stderr)
    print("fixtures reproduced" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    ap.add_argument("--check", action="store_true", help="regenerate and compare, write nothing")
    args = ap.parse_args(argv)
    found = version("mergekit")
    if found != MERGEKIT_VERSION:
        raise SystemExit(f"make_fixtures: needs mergekit {MERGEKIT_VERSION}, found {found}")
    if args.check:
        return check(args.out)
    generate(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
