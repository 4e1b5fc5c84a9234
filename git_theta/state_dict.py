"""A state dict (name -> numpy array or torch tensor) as a checkpoint stream for the clean path.

`Repository.save` hands the clean exactly what `git add` of the saved file would, so both
store the same objects and metadata. A streaming format (safetensors) is written by a thread
into a pipe the clean reads: no copy of the whole model in memory or on disk. Formats that
need a seekable file (PyTorch, npz) are written to a temporary file in the store's tmp dir,
kept in memory while small.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from git_theta.errors import CheckpointError
from git_theta.formats import Format, TensorSpec
from git_theta.frameworks import from_framework, is_torch_tensor
from git_theta.tensor import RawTensor

__all__ = ["state_dict_stream"]

# A seekable checkpoint up to this size stays in memory; larger ones spill to the tmp dir.
SPOOL_MEMORY_BYTES = 64 << 20


def _flat_tensors(state_dict: Mapping[str, Any], source: str) -> dict[str, RawTensor]:
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: a state dict must be a mapping of names to tensors")
    tensors = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{source}: parameter names must be strings, got {name!r}")
        tensors[name] = from_framework(value, name=name, source=source)
    return tensors


@contextmanager
def state_dict_stream(
    state_dict: Mapping[str, Any], fmt: Format, source: str, tmp_dir: Path
) -> Iterator[BinaryIO]:
    """The checkpoint of `fmt` holding `state_dict`, as a stream positioned at its start.

    Raises:
        CheckpointError: a value is not a tensor, of a dtype the format cannot hold, or (for
            formats other than PyTorch) the state dict is nested.
    """
    if fmt.name == "pytorch":
        with _spooled(tmp_dir) as f:
            _torch_save(state_dict, f, source)
            yield f
        return
    tensors = _flat_tensors(state_dict, source)
    specs = {name: TensorSpec(t.dtype, t.shape) for name, t in tensors.items()}

    def source_of(order: Sequence[str]) -> Iterator[RawTensor]:
        return (tensors[name] for name in order)

    if not fmt.streams:
        with _spooled(tmp_dir) as f:
            fmt.join(f, None, specs, source_of, source=source)
            f.seek(0)
            yield f
        return
    with _piped(lambda out: fmt.join(out, None, specs, source_of, source=source)) as stream:
        yield stream


@contextmanager
def _spooled(tmp_dir: Path) -> Iterator[Any]:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.SpooledTemporaryFile(
        max_size=SPOOL_MEMORY_BYTES, mode="w+b", dir=str(tmp_dir)
    ) as f:
        yield f


def _torch_save(state_dict: Mapping[str, Any], f: Any, source: str) -> None:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{source}: writing a PyTorch checkpoint needs torch (pip install 'git-theta[torch]')"
        ) from None
    if not any(is_torch_tensor(v) for v in state_dict.values()):
        # numpy values: torch.save would pickle them as numpy objects, which
        # torch.load(weights_only=True) refuses; store them as tensors.
        state_dict = {
            k: torch.from_numpy(v) if hasattr(v, "__array__") else v for k, v in state_dict.items()
        }
    torch.save(state_dict, f)
    f.seek(0)


@contextmanager
def _piped(write: Any) -> Iterator[BinaryIO]:
    """A stream of what `write(out)` writes, produced by a thread as the caller reads."""
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as out:
                write(out)
        except BrokenPipeError:
            pass  # the reader stopped early; its own error is the one to report
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=produce, name="git-theta-state-dict", daemon=True)
    thread.start()
    reader = os.fdopen(read_fd, "rb", buffering=1 << 20)
    try:
        yield reader
    except BaseException:
        # The writer's failure explains a stream that ended early; prefer it.
        _finish(reader, thread)
        if failure:
            raise failure[0] from None
        raise
    _finish(reader, thread)
    if failure:
        raise failure[0]


def _finish(reader: BinaryIO, thread: threading.Thread) -> None:
    reader.close()  # unblocks a writer the reader stopped early
    thread.join()
