"""Element-wise merge work in chunks, so temporaries stay a few MiB whatever the tensor.

A merge holds its inputs and its output whole; every element-wise step in between (task
vectors, masks, products, sums) runs over CHUNK_ELEMENTS elements of the flattened tensors at
a time. Each element's arithmetic is the same as over whole tensors, so results do not depend
on the chunk size (tests/unit/merges/test_task_vectors.py runs with chunks of 7 elements).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["CHUNK_ELEMENTS", "chunks"]

# 256Ki elements = 1 MiB of float32 per temporary: the ~10 temporaries of a TIES step stay
# in cache, and numpy's per-call overhead is still noise (measured on the benchmark's
# 152 MiB tensor: 64Ki to 1Mi elements perform alike).
CHUNK_ELEMENTS = 1 << 18


def chunks(n: int) -> Iterator[slice]:
    """Consecutive slices of at most CHUNK_ELEMENTS covering range(n)."""
    size = CHUNK_ELEMENTS  # read at each call, so tests can make chunks tiny
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
