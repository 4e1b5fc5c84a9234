"""How much a tensor changed: dtype conversion and statistics computed chunk by chunk.

Floats (F16, BF16, F32, F64, the fp8 kinds) are widened to float64 and complex to complex128,
a chunk at a time, so memory stays at the two tensors plus a few chunks however large they
are. bf16 is the upper half of a float32; the fp8 kinds go through a 256-entry table built
from their definitions (OCP 8-bit floating point, 2023). Integers and booleans get the two
statistics that mean something for them, computed exactly: entries changed and max |delta|.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from git_theta.tensor import DTYPE_SIZES, RawTensor

__all__ = [
    "DeltaStats",
    "Nonfinite",
    "TensorStats",
    "delta_stats",
    "kind",
    "nonfinite",
    "tensor_stats",
    "to_float64",
]

# 64K elements: 512 KiB per float64 operand, so a chunk's temporaries stay in cache.
CHUNK_ELEMENTS = 1 << 16

_FLOAT_NATIVE = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
_INT_NATIVE = {
    "I8": "i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "U8": "u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
    "BOOL": "u1",
}
_UNSIGNED = frozenset({"U8", "U16", "U32", "U64", "BOOL"})
_UINT_OF_SIZE = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}


def kind(dtype: str) -> str:
    """`float`, `complex`, `int` or `bool`: which statistics a dtype's values support."""
    if dtype == "C64":
        return "complex"
    if dtype == "BOOL":
        return "bool"
    if dtype in _INT_NATIVE:
        return "int"
    return "float"


@cache
def _minifloat_table(exp_bits: int, man_bits: int, bias: int, *, fn: bool) -> np.ndarray:
    """float64 value of every byte of a sign/exponent/mantissa 8-bit float.

    `fn` ("finite, NaN"): no infinities, and only all-ones exponent *and* mantissa is NaN
    (E4M3); otherwise IEEE-like: all-ones exponent is infinity or NaN (E5M2).
    """
    table = np.empty(256, dtype=np.float64)
    top = (1 << exp_bits) - 1
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        e = (byte >> man_bits) & top
        m = byte & ((1 << man_bits) - 1)
        if e == 0:
            value = m / (1 << man_bits) * 2.0 ** (1 - bias)
        else:
            value = (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
        if fn and e == top and m == (1 << man_bits) - 1:
            value = math.nan
        elif not fn and e == top:
            value = math.inf if m == 0 else math.nan
        table[byte] = sign * value
    return table


@cache
def _e8m0_table() -> np.ndarray:
    # Exponent only, unsigned, bias 127; 0xFF is NaN (the OCP MX scale type).
    table = np.array([2.0 ** (b - 127) for b in range(256)], dtype=np.float64)
    table[255] = math.nan
    return table


def _fp8_table(dtype: str) -> np.ndarray:
    if dtype == "F8_E4M3":
        return _minifloat_table(4, 3, 7, fn=True)
    if dtype == "F8_E5M2":
        return _minifloat_table(5, 2, 15, fn=False)
    return _e8m0_table()


def _to_wide(dtype: str, raw: np.ndarray) -> np.ndarray:
    """float64 (complex128 for C64) values of a slice of raw bytes viewed as `dtype`."""
    if dtype in _FLOAT_NATIVE:
        return raw.view(_FLOAT_NATIVE[dtype]).astype(np.float64)
    if dtype == "BF16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype.startswith("F8_"):
        return _fp8_table(dtype)[raw]
    if dtype == "C64":
        return raw.view("<c8").astype(np.complex128)
    return raw.view(_INT_NATIVE[dtype]).astype(np.float64)


def _raw(tensor: RawTensor) -> np.ndarray:
    """The tensor's elements as unsigned integers of their width (bit patterns), flat."""
    return np.frombuffer(tensor.data, dtype=_UINT_OF_SIZE[DTYPE_SIZES[tensor.dtype]])


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK_ELEMENTS):
        yield slice(start, min(n, start + CHUNK_ELEMENTS))


def to_float64(tensor: RawTensor) -> np.ndarray:
    """The whole tensor as float64 (complex128 for C64), flat; for tests and small tensors."""
    raw = _raw(tensor)
    if not raw.size:
        return np.zeros(0, np.complex128 if tensor.dtype == "C64" else np.float64)
    return np.concatenate([_to_wide(tensor.dtype, raw[s]) for s in _chunks(raw.size)])


@dataclass(frozen=True)
class Nonfinite:
    """NaN and infinite entries of one tensor (always 0 for integers and booleans)."""

    nan: int = 0
    inf: int = 0

    def __bool__(self) -> bool:
        return bool(self.nan or self.inf)

    def __str__(self) -> str:
        parts = [f"{self.nan} NaN"] * bool(self.nan) + [f"{self.inf} Inf"] * bool(self.inf)
        return ", ".join(parts) or "finite"


def nonfinite(tensor: RawTensor) -> Nonfinite:
    """Count NaN and Inf in a tensor, streaming through it a chunk at a time."""
    if kind(tensor.dtype) not in ("float", "complex"):
        return Nonfinite()
    raw = _raw(tensor)
    nan = inf = 0
    for s in _chunks(raw.size):
        values = _to_wide(tensor.dtype, raw[s])
        nan += int(np.count_nonzero(np.isnan(values)))
        inf += int(np.count_nonzero(np.isinf(values)))
    return Nonfinite(nan, inf)


@dataclass(frozen=True)
class DeltaStats:
    """How a tensor changed between two versions of the same shape.

    Attributes:
        numel: entries in the tensor.
        changed: entries that differ (bit patterns for the same dtype, values across dtypes).
        max_abs_delta: max |new - old|; an exact int for integer and boolean tensors.
        delta_l2: ||new - old||_2 (None for integers and booleans, as are the norms).
        old_l2: ||old||_2.
        new_l2: ||new||_2.
        dot: <old, new> (the real part, for complex tensors).
        new_nonfinite: NaN and Inf in the new tensor.
    """

    numel: int
    changed: int
    max_abs_delta: float | int | None
    delta_l2: float | None = None
    old_l2: float | None = None
    new_l2: float | None = None
    dot: float | None = None
    new_nonfinite: Nonfinite = Nonfinite()

    @property
    def fraction_changed(self) -> float:
        return self.changed / self.numel if self.numel else 0.0

    @property
    def relative_change(self) -> float | None:
        """||new - old|| / ||old||: infinite when a zero tensor becomes non-zero."""
        if self.delta_l2 is None or self.old_l2 is None:
            return None
        if self.old_l2 == 0:
            return 0.0 if self.delta_l2 == 0 else math.inf
        return self.delta_l2 / self.old_l2

    @property
    def cosine(self) -> float | None:
        """cos(old, new); None when either is all zeros (the angle is undefined)."""
        if self.dot is None or not self.old_l2 or not self.new_l2:
            return None
        return self.dot / (self.old_l2 * self.new_l2)


def delta_stats(old: RawTensor, new: RawTensor) -> DeltaStats | None:
    """Statistics of `new - old`, or None when the shapes differ (no element-wise delta).

    Floats on either side give float statistics in float64; two integer or boolean tensors
    give exact counts and max |delta|.
    """
    if old.shape != new.shape:
        return None
    kinds = {kind(old.dtype), kind(new.dtype)}
    if kinds <= {"int", "bool"}:
        return _integer_stats(old, new)
    return _float_stats(old, new)


def _max_nan(a: float, b: float) -> float:
    """max that keeps NaN, as numpy's max does (Python's max drops it by argument order)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """<x, y> (real part for complex). einsum rather than BLAS: no thread wake-up per call,
    which costs more than the arithmetic on chunks of this size."""
    if x.dtype.kind == "c" or y.dtype.kind == "c":
        return float(np.vdot(x, y).real)
    return float(np.einsum("i,i->", x, y))


def _max_abs(d: np.ndarray) -> float:
    if d.dtype.kind == "c":
        return float(np.abs(d).max())
    return float(max(d.max(), -d.min()))  # no |d| array; NaN propagates through both


def _float_stats(old: RawTensor, new: RawTensor) -> DeltaStats:
    a, b = _raw(old), _raw(new)
    same_dtype = old.dtype == new.dtype
    d2 = o2 = n2 = dot = 0.0
    max_abs = 0.0
    changed = nan = inf = 0
    for s in _chunks(a.size):
        o, n = _to_wide(old.dtype, a[s]), _to_wide(new.dtype, b[s])
        d = n - o
        d2 += _dot(d, d)
        o2 += _dot(o, o)
        n2_chunk = _dot(n, n)
        n2 += n2_chunk
        dot += _dot(o, n)
        max_abs = _max_nan(max_abs, _max_abs(d))
        changed += int(np.count_nonzero(a[s] != b[s] if same_dtype else o != n))
        # A finite sum of squares means every entry is finite; count only when it is not.
        if not math.isfinite(n2_chunk):
            nan += int(np.count_nonzero(np.isnan(n)))
            inf += int(np.count_nonzero(np.isinf(n)))
    return DeltaStats(
        numel=int(a.size),
        changed=changed,
        max_abs_delta=max_abs,
        delta_l2=math.sqrt(d2),
        old_l2=math.sqrt(o2),
        new_l2=math.sqrt(n2),
        dot=dot,
        new_nonfinite=Nonfinite(nan, inf),
    )


def _as_exact_ints(tensor: RawTensor, raw: np.ndarray, *, signed: bool) -> np.ndarray:
    return raw.view(_INT_NATIVE[tensor.dtype]).astype(np.int64 if signed else np.uint64)


def _integer_stats(old: RawTensor, new: RawTensor) -> DeltaStats:
    a, b = _raw(old), _raw(new)
    # int64 holds every value of both sides unless a U64 is involved; unsigned sides all fit
    # uint64. A U64 against a signed type is the one case left to float64.
    dtypes = {old.dtype, new.dtype}
    signed = "U64" not in dtypes
    exact = signed or dtypes <= _UNSIGNED
    max_abs: int | float = 0
    changed = 0
    for s in _chunks(a.size):
        if exact:
            o = _as_exact_ints(old, a[s], signed=signed)
            n = _as_exact_ints(new, b[s], signed=signed)
            # |n - o| = max - min, computed modulo 2**64: exact, since it lies in [0, 2**64).
            hi, lo = np.maximum(o, n).view(np.uint64), np.minimum(o, n).view(np.uint64)
            max_abs = max(int(max_abs), int((hi - lo).max()))
            changed += int(np.count_nonzero(o != n))
        else:
            of, nf = _to_wide(old.dtype, a[s]), _to_wide(new.dtype, b[s])
            max_abs = max(float(max_abs), float(np.abs(nf - of).max()))
            changed += int(np.count_nonzero(of != nf))
    return DeltaStats(numel=int(a.size), changed=changed, max_abs_delta=max_abs)


@dataclass(frozen=True)
class TensorStats:
    """What one tensor holds, summed up (the per-parameter columns of `git-theta textconv`).

    Attributes:
        numel: entries in the tensor.
        l2: ||x||_2 (sqrt of the sum of |x|^2 for complex).
        mean: the mean entry (the fraction of true entries for booleans); None when empty.
        max_abs: max |x|; an exact int for integer and boolean tensors; None when empty.
        nonfinite: NaN and Inf entries.
    """

    numel: int
    l2: float
    mean: float | complex | None
    max_abs: float | int | None
    nonfinite: Nonfinite = Nonfinite()


def _int_max_abs(dtype: str, raw: np.ndarray) -> int:
    """max |x| of integers, exactly (no int64 overflow at the minimum, no U64 rounding)."""
    values = raw.view(_INT_NATIVE[dtype])
    high = int(values.max())
    return high if dtype in _UNSIGNED else max(high, -int(values.min()))


def tensor_stats(tensor: RawTensor) -> TensorStats:
    """L2 norm, mean, max |x| and NaN/Inf counts of one tensor, a chunk at a time.

    Sums are accumulated in float64 (complex128 for C64); a NaN anywhere makes the norm,
    mean and max NaN, and `nonfinite` counts it.
    """
    raw = _raw(tensor)
    if not raw.size:
        return TensorStats(0, 0.0, None, None)
    exact_ints = kind(tensor.dtype) in ("int", "bool")
    total: float | complex = 0.0
    squares = 0.0
    max_abs: float | int = 0
    nan = inf = 0
    for s in _chunks(raw.size):
        values = _to_wide(tensor.dtype, raw[s])
        total += complex(values.sum()) if values.dtype.kind == "c" else float(values.sum())
        chunk_squares = _dot(values, values)
        squares += chunk_squares
        if exact_ints:
            max_abs = max(int(max_abs), _int_max_abs(tensor.dtype, raw[s]))
            continue
        max_abs = _max_nan(float(max_abs), _max_abs(values))
        # A finite sum of squares means every entry is finite; count only when it is not.
        if not math.isfinite(chunk_squares):
            nan += int(np.count_nonzero(np.isnan(values)))
            inf += int(np.count_nonzero(np.isinf(values)))
    return TensorStats(
        numel=int(raw.size),
        l2=math.sqrt(squares),
        mean=total / raw.size,
        max_abs=max_abs,
        nonfinite=Nonfinite(nan, inf),
    )
