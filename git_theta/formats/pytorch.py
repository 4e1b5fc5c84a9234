"""PyTorch checkpoints (`torch.save` zip archives and legacy pickles), read with weights_only.

A checkpoint is any structure of dicts, lists and tuples whose leaves are tensors or plain
values (step counters, config dicts, torch.Size). Each tensor is a parameter named by its path
of keys joined with "/": `{"model": {"a.weight": t}, "step": 3}` gives `model/a.weight`, list
items are named by their index. The layout is `torch.save` of that structure with each tensor
replaced by a placeholder string naming its parameter, so the non-tensor leaves survive.

Every load, of a checkpoint or of a stored layout, passes `weights_only=True`: a pickle that
tries to call anything beyond torch's allowlist is refused before it runs. torch is imported
inside methods, so git-theta works without it for other formats.
Docs: https://pytorch.org/docs/stable/notes/serialization.html
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, BinaryIO

from git_theta.errors import CheckpointError
from git_theta.formats.base import Format, Split, TensorSource, TensorSpec, short_repr
from git_theta.tensor import BufferPool, RawTensor

if TYPE_CHECKING:
    import torch

__all__ = [
    "PLACEHOLDER_PREFIX",
    "ROOT_NAME",
    "PyTorchFormat",
    "check_tensor",
    "tensor_to_raw",
    "torch_dtypes",
]

#: Marks a tensor's place in the layout. The NUL keeps it apart from any string a user writes;
#: after the prefix come flags ("p": nn.Parameter, "g": requires_grad), ":" and the name.
PLACEHOLDER_PREFIX = "\x00git-theta-tensor:"
#: The parameter name of a checkpoint that is one bare tensor (its key path is empty).
ROOT_NAME = "tensor"

# Legacy (pre-1.6) torch.save: pickle protocol 2 of the long int MAGIC_NUMBER, as `\x8a\x0a`
# (LONG1, 10 bytes little-endian); see torch/serialization.py `_legacy_save`.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's zip holds `<archive name>/data.pkl`; npz members never end so.
_TORCH_PICKLE_MEMBER = re.compile(r"[^/]+/data\.pkl")

_SAFETENSORS_NAMES: dict[str, str] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e8m0fnu": "F8_E8M0",
    "complex64": "C64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}

# What the weights-only unpickler says when a pickle reaches for a callable it refuses
# (torch/_weights_only_unpickler.py); the group is the callable's dotted name.
_REFUSED_CALL = (
    re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)"),
    re.compile(r"reduce for unrecognized function (.+?)(?: which belongs to|$)", re.MULTILINE),
    re.compile(r"create new object .* but got <class '([^']+)'>"),
)


def _fresh_skeleton(specs: Mapping[str, TensorSpec]) -> dict[str, str]:
    """A flat state dict of plain tensors, by name: what a checkpoint without a layout is
    written as."""
    return {n: f"{PLACEHOLDER_PREFIX}:{n}" for n in sorted(specs)}


@cache
def torch_dtypes() -> tuple[dict[torch.dtype, str], dict[str, torch.dtype]]:
    """torch dtype -> safetensors dtype name, and back, for the dtypes this torch has."""
    import torch

    # getattr: older torch lacks the unsigned and e8m0 dtypes.
    to_name = {getattr(torch, a): n for a, n in _SAFETENSORS_NAMES.items() if hasattr(torch, a)}
    return to_name, {name: dtype for dtype, name in to_name.items()}


class PyTorchFormat(Format):
    name = "pytorch"
    streams = False

    def sniff(self, head: bytes, file: BinaryIO | None) -> bool:
        if file is None:
            return False
        if head.startswith(_LEGACY_MAGIC):
            return True
        if not head.startswith(_ZIP_MAGIC):
            return False
        position = file.tell()
        try:
            with zipfile.ZipFile(file) as archive:
                return any(_TORCH_PICKLE_MEMBER.fullmatch(n) for n in archive.namelist())
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return False
        finally:
            file.seek(position)

    def split(self, stream: BinaryIO, *, source: str, buffers: BufferPool | None = None) -> Split:
        _require_torch(source)
        import torch

        checkpoint = _load(_at_start(stream), source=source)
        found: dict[str, tuple[str, torch.Tensor]] = {}

        def take(leaf: Any, path: tuple[str, ...]) -> Any:
            if isinstance(leaf, str) and leaf.startswith(PLACEHOLDER_PREFIX):
                raise CheckpointError(
                    f"{source}: entry {'/'.join(path)!r} holds a string that starts like a "
                    "git-theta placeholder; rename or remove it"
                )
            if not isinstance(leaf, torch.Tensor):
                return leaf
            name = "/".join(path) if path else ROOT_NAME
            if name in found:
                raise CheckpointError(
                    f"{source}: two entries map to parameter {name!r}; rename one of them"
                )
            found[name] = (check_tensor(leaf, name, source), leaf)
            flags = "p" * isinstance(leaf, torch.nn.Parameter) + "g" * leaf.requires_grad
            return f"{PLACEHOLDER_PREFIX}{flags}:{name}"

        layout = io.BytesIO()
        torch.save(_map_leaves(checkpoint, take, source=source), layout)
        return Split(layout.getvalue(), ((n, tensor_to_raw(t, d)) for n, (d, t) in found.items()))

    def layout_values(self, layout: bytes, *, source: str) -> dict[str, str] | None:
        values: dict[str, str] = {}

        def note(leaf: Any, path: tuple[str, ...]) -> Any:
            if not (isinstance(leaf, str) and leaf.startswith(PLACEHOLDER_PREFIX)):
                values["/".join(path) or ROOT_NAME] = short_repr(leaf)
            return leaf

        _map_leaves(_load(io.BytesIO(layout), source=source), note, source=source)
        return values

    def canonical_layout(self, specs: Mapping[str, TensorSpec]) -> bytes | None:
        import torch

        layout = io.BytesIO()
        torch.save(_fresh_skeleton(specs), layout)
        return layout.getvalue()

    def join(
        self,
        out: BinaryIO,
        layout: bytes | None,
        specs: Mapping[str, TensorSpec],
        tensors: TensorSource,
        *,
        source: str,
    ) -> None:
        _require_torch(source)
        import torch

        if layout is None:
            skeleton: Any = _fresh_skeleton(specs)
        else:
            skeleton = _load(io.BytesIO(layout), source=f"{source} (stored layout)")
        marks: dict[str, str] = {}  # parameter name -> its placeholder, in file order

        def note(leaf: Any, path: tuple[str, ...]) -> Any:
            if isinstance(leaf, str) and leaf.startswith(PLACEHOLDER_PREFIX):
                name = leaf[len(PLACEHOLDER_PREFIX) :].partition(":")[2]
                if name in marks:
                    raise CheckpointError(f"{source}: the stored layout names {name!r} twice")
                marks[name] = leaf
            return leaf

        _map_leaves(skeleton, note, source=source)
        if marks.keys() != specs.keys():
            diff = sorted(marks.keys() ^ specs.keys())
            raise CheckpointError(
                f"{source}: the stored PyTorch layout does not match its parameters "
                f"(differ: {', '.join(map(repr, diff[:5]))})"
            )
        stream = tensors(list(marks))
        built: dict[str, torch.Tensor] = {}
        for name, mark in marks.items():
            raw = next(stream, None)
            if raw is None:
                raise CheckpointError(f"{source}: parameter {name!r} was not supplied")
            built[mark] = _from_raw(raw, specs[name], mark, source)

        def put(leaf: Any, path: tuple[str, ...]) -> Any:
            return built.get(leaf, leaf) if isinstance(leaf, str) else leaf

        torch.save(_map_leaves(skeleton, put, source=source), out)


def _at_start(stream: BinaryIO) -> BinaryIO:
    # torch's zip reader seeks to absolute offsets, so it needs the checkpoint at offset 0.
    if stream.seekable() and stream.tell() == 0:
        return stream
    return io.BytesIO(stream.read())


def _require_torch(source: str) -> None:
    """A one-line error saying how to get torch (an optional extra) if it is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CheckpointError(
            f"{source}: a PyTorch checkpoint; reading it needs torch "
            "(pip install 'git-theta[torch]')"
        ) from None


def _check_archive(file: BinaryIO, *, source: str) -> None:
    """Every member of a zip checkpoint against its CRC-32: torch.load reads the bytes of
    a tensor without checking them, so a flipped byte would be committed as a new value."""
    position = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"{source}: corrupt or truncated PyTorch checkpoint: {_first_line(exc)}"
        ) from None
    finally:
        file.seek(position)
    if bad is not None:
        raise CheckpointError(
            f"{source}: corrupt PyTorch checkpoint: archive member {bad!r} fails its CRC-32 check"
        )


def _load(file: BinaryIO, *, source: str) -> Any:
    _require_torch(source)
    import torch

    head = file.read(len(_ZIP_MAGIC))
    file.seek(-len(head), io.SEEK_CUR)
    if head == _ZIP_MAGIC:
        _check_archive(file, source=source)
    try:
        # torch warns about pickle protocols and defaults; none of it is the user's business.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch re-raises the unpickler's own short error with a long preamble added.
        inner = exc.__context__ if isinstance(exc.__context__, pickle.UnpicklingError) else exc
        detail = str(inner)
        for pattern in _REFUSED_CALL:
            match = pattern.search(detail)
            if match:
                detail = f"the pickle calls {match.group(1)}"
                break
        else:
            detail = _first_line(inner)
        raise CheckpointError(
            f"{source}: refused to load: {detail} (only weights_only data is loaded)"
        ) from None
    except Exception as exc:  # a damaged file surfaces as RuntimeError, EOFError, struct.error...
        raise CheckpointError(
            f"{source}: corrupt or truncated PyTorch checkpoint: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    if not lines:
        return "the file ends early" if isinstance(exc, EOFError) else type(exc).__name__
    # torch appends paragraphs of advice after the first sentence; keep the fact only.
    return lines[0].split(". ")[0].rstrip(".")


def _map_leaves(obj: Any, fn: Callable[[Any, tuple[str, ...]], Any], *, source: str) -> Any:
    """A copy of the dict/list/tuple structure of `obj`, each other value replaced by
    fn(value, key path). Exact types only: torch.Size is a tuple but stays a leaf."""
    active: set[int] = set()

    def visit(node: Any, path: tuple[str, ...]) -> Any:
        kind = type(node)
        if kind not in (dict, OrderedDict, list, tuple):
            return fn(node, path)
        if id(node) in active:
            raise CheckpointError(f"{source}: entry {'/'.join(path)!r} contains itself")
        active.add(id(node))
        try:
            if kind is list or kind is tuple:
                return kind(visit(v, (*path, str(i))) for i, v in enumerate(node))
            copy = kind((k, visit(v, (*path, str(k)))) for k, v in node.items())
            if kind is OrderedDict:
                # state_dict() keeps module versions in `_metadata`; load_state_dict reads them.
                copy.__dict__.update(node.__dict__)
            return copy
        finally:
            active.discard(id(node))

    return visit(obj, ())


def check_tensor(tensor: torch.Tensor, name: str, source: str) -> str:
    import torch

    where = f"{source}: parameter {name!r}"
    if tensor.layout != torch.strided:
        raise CheckpointError(
            f"{where}: {tensor.layout} tensors are not supported; call .to_dense()"
        )
    if tensor.is_quantized:
        raise CheckpointError(f"{where}: quantized tensors are not supported; dequantize first")
    if tensor.is_meta:
        raise CheckpointError(f"{where}: a meta tensor has no data to store")
    dtype = torch_dtypes()[0].get(tensor.dtype)
    if dtype is None:
        raise CheckpointError(f"{where}: unsupported dtype {tensor.dtype}")
    return dtype


def tensor_to_raw(tensor: torch.Tensor, dtype: str) -> RawTensor:
    import torch

    flat = tensor.detach().resolve_conj().resolve_neg().reshape(-1).contiguous()
    # A uint8 view gives the raw bytes of any dtype, bf16 and fp8 included (CPU is little-endian).
    return RawTensor(dtype, tuple(tensor.shape), flat.view(torch.uint8).numpy().data)


def _from_raw(raw: RawTensor, spec: TensorSpec, mark: str, source: str) -> torch.Tensor:
    import torch

    flags, _, name = mark[len(PLACEHOLDER_PREFIX) :].partition(":")
    where = f"{source}: parameter {name!r}"
    if (raw.dtype, tuple(raw.shape)) != (spec.dtype, tuple(spec.shape)):
        raise CheckpointError(
            f"{where}: got {raw.dtype} {list(raw.shape)}, expected {spec.dtype} {list(spec.shape)}"
        )
    dtype = torch_dtypes()[1].get(raw.dtype)
    if dtype is None:
        raise CheckpointError(f"{where}: this torch has no dtype for {raw.dtype}")
    size = memoryview(raw.data).nbytes
    if size != raw.nbytes:
        raise CheckpointError(f"{where}: {size} bytes of data, {raw.nbytes} expected")
    if size == 0:
        tensor = torch.empty(raw.shape, dtype=dtype)
    else:
        # frombuffer on read-only memory warns and aliases it; a bytearray copy is ours to own.
        flat = torch.frombuffer(bytearray(raw.data), dtype=torch.uint8)
        tensor = flat.view(dtype).reshape(raw.shape)
    if "p" in flags:
        return torch.nn.Parameter(tensor, requires_grad="g" in flags)
    return tensor.requires_grad_("g" in flags)
