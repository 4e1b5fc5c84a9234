"""git-theta 0.2's side files of update tensors (`git theta add --update-data FILE`).

0.2 read, from a checkpoint of any format it knew, one group of tensors per parameter, named
by the parameter's key path and then the update's own key:

    <param>/R, <param>/C   low rank: W' = W + R @ C       (R: out x r, C: r x in)
    <param>/ia3            IA3: W' = W * ia3, broadcast   ((out, 1): rows; (1, in) or (in,): columns)
    <param>/data, /indices, /indptr, /shape
                           sparse: W' = W + the (1, numel) CSR matrix of the change, reshaped

Low rank and IA3 become the same updates a PEFT adapter gives (scale 1, no transpose). A
sparse change is added to the committed version once (in float32, float64 for F64, rounded
to the dtype) and stored as our exact sparse update of the entries it touches. Either way the
file may hold the committed base (`git theta add` then writes the updated weights) or the
updated model, exactly as with `--update-path`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from git_theta.errors import CheckpointError, ConfigError
from git_theta.tensor import RawTensor
from git_theta.updates.peft import AdapterUpdate

__all__ = ["SIDE_KEYS", "read_side_file"]

#: The keys 0.2 wrote under each parameter, per update type.
SIDE_KEYS: dict[str, frozenset[str]] = {
    "low-rank": frozenset({"R", "C"}),
    "ia3": frozenset({"ia3"}),
    "sparse": frozenset({"data", "indices", "indptr", "shape"}),
}


def _load(path: Path) -> dict[str, RawTensor]:
    from git_theta.formats import sniff_format, unknown_format

    if not path.is_file():
        raise ConfigError(f"{path}: --update-data names no file")
    with path.open("rb") as f:
        head = f.read(64)
        f.seek(0)
        fmt = sniff_format(head, f)
        if fmt is None:
            raise unknown_format(str(path), head)
        return dict(fmt.split(f, source=str(path)).tensors)


def read_side_file(path: Path, kind: str) -> dict[str, AdapterUpdate]:
    """Parameter name -> its update, from a 0.2 side file for update type `kind`.

    Raises:
        ConfigError: `kind` has no side-file layout.
        CheckpointError: the file is not a checkpoint, a group lacks a key or has a foreign
            one, or a tensor has the wrong number of dimensions; names the file and parameter.
    """
    if kind not in SIDE_KEYS:
        raise ConfigError(
            f"--update-data goes with --update-type low-rank, ia3 or sparse (not {kind})"
        )
    groups: dict[str, dict[str, RawTensor]] = defaultdict(dict)
    for name, tensor in _load(path).items():
        param, sep, key = name.rpartition("/")
        if not sep or key not in SIDE_KEYS[kind]:
            wanted = " and ".join(f"<param>/{k}" for k in sorted(SIDE_KEYS[kind]))
            raise CheckpointError(
                f"{path}: tensor {name!r} is not {wanted} (git-theta 0.2's {kind} layout)"
            )
        groups[param][key] = tensor
    if not groups:
        raise CheckpointError(f"{path}: the side file holds no tensors")
    out = {}
    for param, found in sorted(groups.items()):
        where = f"{path}: parameter {param}"
        missing = SIDE_KEYS[kind] - set(found)
        if missing:
            raise CheckpointError(f"{where}: no {' or '.join(sorted(missing))} tensor")
        if kind == "low-rank":
            r, c = found["R"], found["C"]
            if len(r.shape) != 2 or len(c.shape) != 2 or r.shape[1] != c.shape[0]:
                raise CheckpointError(
                    f"{where}: R {list(r.shape)} @ C {list(c.shape)} is not a matrix product"
                )
            out[param] = AdapterUpdate("low-rank", param, {"a": c, "b": r}, transpose=False)
        elif kind == "sparse":
            out[param] = AdapterUpdate("sparse", param, _csr_change(found, where))
        else:
            vector = found["ia3"]
            if len(vector.shape) > 2 or (len(vector.shape) == 2 and 1 not in vector.shape):
                raise CheckpointError(
                    f"{where}: ia3 of shape {list(vector.shape)} is not (n,), (n, 1) or (1, n)"
                )
            rows = len(vector.shape) == 2 and vector.shape[1] == 1 and vector.shape[0] != 1
            out[param] = AdapterUpdate("ia3", param, {"vector": vector}, axis=0 if rows else 1)
    return out


def _csr_change(found: dict[str, RawTensor], where: str) -> dict[str, RawTensor]:
    """0.2's CSR of a (1, numel) change as flat indices (I64) and values (the data's dtype)."""
    import numpy as np

    from git_theta.compute import to_compute

    def ints(key: str) -> np.ndarray:
        tensor = found[key]
        if not tensor.dtype.startswith(("I", "U")) or len(tensor.shape) != 1:
            raise CheckpointError(f"{where}: {key} is not a 1-D integer tensor")
        return np.frombuffer(tensor.data, dtype=_NUMPY_INT[tensor.dtype]).astype(np.int64)

    indices, indptr, shape = ints("indices"), ints("indptr"), ints("shape")
    data = found["data"]
    if len(data.shape) != 1 or data.shape[0] != indices.size:
        raise CheckpointError(
            f"{where}: data has {list(data.shape)} values for {indices.size} indices"
        )
    numel = int(np.prod(shape)) if shape.size else 1
    if indptr.tolist() != [0, indices.size] or (
        indices.size and not 0 <= indices.min() <= indices.max() < numel
    ):
        raise CheckpointError(f"{where}: not the CSR of a (1, {numel}) change")
    values = to_compute(data).astype(np.float64)
    return {
        "indices": RawTensor("I64", (indices.size,), indices.astype("<i8").tobytes()),
        "values": RawTensor("F64", (values.size,), values.astype("<f8").tobytes()),
        "shape": RawTensor("I64", (shape.size,), shape.astype("<i8").tobytes()),
    }


_NUMPY_INT = {
    "I8": "<i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "U8": "<u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
}
