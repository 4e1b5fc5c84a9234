"""The in-memory tensor every part of git-theta speaks: dtype name, shape and raw bytes.

Dtype names are safetensors' (`F32`, `BF16`, `F8_E4M3`, ...), because that format names every
dtype the field uses, including those numpy lacks. Raw bytes are little-endian, C order.
"""

from __future__ import annotations

import math
import mmap
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import xxhash

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BufferPool",
    "DTYPE_SIZES",
    "FLOAT_DTYPES",
    "KNOWN_DTYPES",
    "PACKED_BITS",
    "RawTensor",
    "allocate",
    "content_hash",
    "dtype_nbytes",
    "dtype_size",
    "numpy_dtype_name",
    "storage_itemsize",
]

DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
    "C64": 8,
}

# Sub-byte floats, packed: bits per element. A tensor of them holds numel * bits / 8 bytes,
# which must be whole (safetensors refuses the rest). git-theta stores and diffs their bytes
# as bytes: it never needs their values.
PACKED_BITS: dict[str, int] = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}

KNOWN_DTYPES = frozenset(DTYPE_SIZES) | frozenset(PACKED_BITS)

FLOAT_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F8_E8M0", "F16", "BF16", "F32", "F64", "C64"})

# numpy has no bf16 or fp8; those stay raw bytes unless a caller converts them on purpose.
_NUMPY_NAMES: dict[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "<u2",
    "I16": "<i2",
    "F16": "<f2",
    "U32": "<u4",
    "I32": "<i4",
    "F32": "<f4",
    "U64": "<u8",
    "I64": "<i8",
    "F64": "<f8",
    "C64": "<c8",
}

# The hash that decides "unchanged": 128-bit xxh3 runs near memory speed, so `git status`
# after a touch costs little more than reading the file. The algorithm is part of the value
# so it can change without ambiguity.
HASH_PREFIX = "xxh3_128:"


def content_hash(data: bytes | bytearray | memoryview) -> str:
    """Hash raw tensor bytes as they appear in metadata (`xxh3_128:<hex>`)."""
    return HASH_PREFIX + xxhash.xxh3_128_hexdigest(data)


# Above this, tensor buffers come from an anonymous mapping: the kernel hands out zeroed pages
# as they are first written, where bytearray(n) would zero every byte first, a whole extra
# pass over memory for buffers that are about to be overwritten anyway.
_MAPPED_BYTES = 1024 * 1024
# Private, not shared (Python's default for mmap(-1)): shared anonymous memory lives in shmem,
# whose page faults cost more. (Transparent huge pages were tried twice and dropped: docs/design.md.)
_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)


def allocate(n: int) -> memoryview:
    """A writable buffer of `n` bytes for tensor data that will be overwritten in full."""
    if n < _MAPPED_BYTES:
        return memoryview(bytearray(n))
    if not _PRIVATE:  # not POSIX
        return memoryview(mmap.mmap(-1, n))
    return memoryview(mmap.mmap(-1, n, flags=_PRIVATE))


class BufferPool:
    """Tensor buffers handed back for reuse.

    Filling a fresh buffer costs a page fault per 4 KiB, which on this class of machine is most
    of the time spent reading a checkpoint from the page cache. Reusing buffers a consumer is
    done with touches the same memory again instead. Thread-safe: workers give back, the
    reader takes. At most `limit` bytes and MAX_FREE buffers are kept free (smallest dropped
    first), so the pool adds a bounded amount to memory and each call a bounded amount of work.
    Buffers under SMALL_BYTES are not pooled: they cost no page faults worth saving, and a
    checkpoint of 100,000 tiny tensors would otherwise fill the pool with them.
    """

    MAX_FREE = 64
    SMALL_BYTES = 64 * 1024

    def __init__(self, limit: int = 128 * 1024 * 1024) -> None:
        self._limit = limit
        self._free: list[mmap.mmap | bytearray] = []
        self._lock = threading.Lock()

    def take(self, n: int) -> memoryview:
        """A writable buffer of `n` bytes, reused if one large enough was given back."""
        if n < self.SMALL_BYTES:
            return allocate(n)
        with self._lock:
            fits = [b for b in self._free if len(b) >= n]
            if fits:
                best = min(fits, key=len)
                self._free.remove(best)
                return memoryview(best)[:n]
        return allocate(n)

    def give(self, data: bytes | bytearray | memoryview) -> None:
        """Hand back a buffer from `take`; the caller must not use `data` afterwards."""
        owner = data.obj if isinstance(data, memoryview) else None
        if (
            not isinstance(owner, mmap.mmap | bytearray)
            or len(owner) > self._limit
            or len(owner) < self.SMALL_BYTES
        ):
            return
        with self._lock:
            if any(b is owner for b in self._free):
                return
            self._free.append(owner)
            self._free.sort(key=len, reverse=True)
            while len(self._free) > self.MAX_FREE or sum(map(len, self._free)) > self._limit:
                self._free.pop()


def dtype_size(dtype: str) -> int:
    """Bytes per element of a dtype name; raises KeyError for names we do not know."""
    return DTYPE_SIZES[dtype]


def storage_itemsize(dtype: str) -> int:
    """The unit in which stored bytes are grouped: the element size, 1 for packed dtypes;
    raises KeyError for names we do not know."""
    if dtype in PACKED_BITS:
        return 1
    return DTYPE_SIZES[dtype]


def dtype_nbytes(dtype: str, shape: tuple[int, ...] | list[int]) -> int:
    """Bytes of a tensor of `dtype` and `shape`.

    Raises:
        KeyError: an unknown dtype.
        ValueError: packed elements that do not fill whole bytes.
    """
    numel = math.prod(shape)
    bits = PACKED_BITS.get(dtype)
    if bits is None:
        return numel * DTYPE_SIZES[dtype]
    if numel * bits % 8:
        raise ValueError(f"{numel} {dtype} elements are {numel * bits} bits, not whole bytes")
    return numel * bits // 8


@dataclass(frozen=True)
class RawTensor:
    """A tensor as bytes: what checkpoints hold and what objects store.

    Attributes:
        dtype: a safetensors dtype name, one of KNOWN_DTYPES.
        shape: the dimensions; () for a scalar.
        data: exactly `dtype_nbytes(dtype, shape)` bytes, little-endian, C order.
    """

    dtype: str
    shape: tuple[int, ...]
    data: bytes | bytearray | memoryview

    @property
    def nbytes(self) -> int:
        return dtype_nbytes(self.dtype, self.shape)

    def to_numpy(self) -> np.ndarray:
        """A read-only numpy view of the data; raises ValueError for dtypes numpy lacks."""
        import numpy as np

        name = _NUMPY_NAMES.get(self.dtype)
        if name is None:
            raise ValueError(f"dtype {self.dtype} has no numpy equivalent")
        return np.frombuffer(self.data, dtype=np.dtype(name)).reshape(self.shape)

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> RawTensor:
        """Wrap a numpy array (copied to C order, little-endian when needed)."""
        import numpy as np

        dtype = numpy_dtype_name(array.dtype)
        data = np.ascontiguousarray(array, dtype=np.dtype(_NUMPY_NAMES[dtype])).tobytes()
        return cls(dtype, tuple(int(d) for d in array.shape), data)

    @classmethod
    def view_numpy(cls, array: np.ndarray) -> RawTensor:
        """Like from_numpy, but sharing the array's memory when it already is C-ordered and
        little-endian (the caller must not change the array while the tensor is in use)."""
        import numpy as np

        dtype = numpy_dtype_name(array.dtype)
        flat = np.ascontiguousarray(array, dtype=np.dtype(_NUMPY_NAMES[dtype])).reshape(-1)
        return cls(dtype, tuple(int(d) for d in array.shape), flat.data.cast("B"))


def numpy_dtype_name(dtype: np.dtype) -> str:
    """The safetensors name of a numpy dtype, in either byte order.

    Raises:
        ValueError: numpy dtypes git-theta does not store (object, strings, float128, ...).
    """
    import numpy as np

    wanted = dtype.newbyteorder("<") if dtype.kind != "b" else dtype
    for name, np_name in _NUMPY_NAMES.items():
        if np.dtype(np_name) == wanted:
            return name
    raise ValueError(f"numpy dtype {dtype} is not supported")
