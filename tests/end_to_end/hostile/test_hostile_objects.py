"""Objects whose headers declare far more than they hold: refused in one line before any of
it is allocated, with the checkout's peak memory far below the declared size. A genuine
object that expands beyond `theta.maxObjectBytes` is refused the same way."""

from __future__ import annotations

import msgpack
import pytest
import xxhash

from git_theta.store.planes import BLOCK_BYTES, compressor
from git_theta.tensor import HASH_PREFIX
from tests.end_to_end.hostile.conftest import Hostile, one_line

GiB = 1 << 30
TiB = 1 << 40
# Peak RSS allowed for a checkout that refuses a huge object: git-theta's own footprint
# (interpreter, numpy, zstd) is well under this; the declared sizes are 1 GiB and 1 TiB.
BOUNDED_KIB = 200 * 1024


def _object(nbytes: int, payload: bytes, codec: str = "planes", digest: str = "") -> bytes:
    header = {
        "v": 1,
        "dtype": "F32",
        "shape": [nbytes // 4],
        "nbytes": nbytes,
        "codec": codec,
        "hash": digest or HASH_PREFIX + "0" * 32,
    }
    if codec == "planes":
        header.update(block=BLOCK_BYTES, zplanes=[0, 1, 2, 3])
    return msgpack.packb(header) + payload


def _commit_object(hostile: Hostile, blob: bytes, nbytes: int, digest: str = "") -> str:
    """Place `blob` in the store and commit metadata whose parameter `w` is it (F32 of
    `nbytes`), with no stored layout (the format's own header is written)."""
    oid = hostile.place_object(blob)
    entry = {
        **hostile.entry("w"),
        "shape": [nbytes // 4],
        "hash": digest or HASH_PREFIX + "0" * 32,
        "object": {"oid": oid, "size": len(blob)},
    }
    text = hostile.with_entry("w", entry).decode()
    start = text.index('"layout": ')
    text = text[:start] + '"layout": null,' + text[text.index("\n", start) :]
    hostile.commit_blob(text.encode())
    hostile.path.unlink()
    return oid


def _random(n: int) -> bytes:
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize(
    ("declared", "codec", "complaint"),
    [
        (
            GiB,
            "planes",
            "object header declares 1073741824 bytes, more than its 38800-byte payload can hold",
        ),
        (
            TiB,
            "planes",
            "object header declares 1099511627776 bytes, more than its 38800-byte payload can hold",
        ),
        (GiB, "raw", "object header declares 1073741824 raw bytes; its payload has 38800"),
    ],
    ids=["1GiB-planes", "1TiB-planes", "1GiB-raw"],
)
def test_an_object_declaring_more_than_it_holds_is_refused_in_bounded_memory(
    hostile, declared, codec, complaint
):
    # 38.8 KB of payload: as small as the object the issue found checked out at 1 GiB.
    blob = _object(declared, _random(38_800), codec)
    oid = _commit_object(hostile, blob, declared)
    result = hostile.run("git", "checkout", "--", "model.safetensors", measure=True)
    line = one_line(result)
    assert line == (
        f"git-theta: smudge failed: model.safetensors: parameter 'w': object {oid} is corrupt "
        f"({complaint})"
    )
    assert result.peak_kib < BOUNDED_KIB, result.peak_kib
    assert not hostile.path.exists()


def _zero_bomb() -> tuple[bytes, str]:
    """A valid object of 1 GiB of float32 zeros, ~60 KB: every plane one small zstd frame.
    Nothing is wrong with it but its size."""
    plane = BLOCK_BYTES // 4
    frame = compressor().compress(bytes(plane))
    block = (len(frame).to_bytes(4, "little") + frame) * 4
    content = xxhash.xxh3_128()
    zeros = bytes(BLOCK_BYTES)
    for _ in range(GiB // BLOCK_BYTES):
        content.update(zeros)
    digest = HASH_PREFIX + content.hexdigest()
    return _object(GiB, block * (GiB // BLOCK_BYTES), digest=digest), digest


def test_a_genuine_object_above_max_object_bytes_is_refused_before_allocation(hostile):
    blob, digest = _zero_bomb()
    assert len(blob) < 100_000
    oid = _commit_object(hostile, blob, GiB, digest)
    hostile.git("config", "theta.maxObjectBytes", "64m")
    result = hostile.run("git", "checkout", "--", "model.safetensors", measure=True)
    assert one_line(result) == (
        f"git-theta: smudge failed: model.safetensors: parameter 'w': object {oid} declares a "
        "tensor of 1073741824 bytes (F32 [268435456]), above theta.maxObjectBytes (67108864); "
        "if the tensor is genuine, raise it with `git config theta.maxObjectBytes <bytes>`"
    )
    assert result.peak_kib < BOUNDED_KIB, result.peak_kib
    assert not hostile.path.exists()


def test_a_malformed_max_object_bytes_is_one_line(hostile):
    hostile.git("config", "theta.maxObjectBytes", "lots")
    hostile.path.unlink()
    line = one_line(hostile.run("git", "checkout", "--", "model.safetensors"))
    assert line.endswith(
        "theta.maxObjectBytes: 'lots' is not a size (a number, optionally with k, m, g or t)"
    ), line


def test_a_lying_object_served_by_an_lfs_server_to_a_clone(hostile, origin):
    # The attacker pushes the object to a real Git LFS server; a victim clones.
    origin.connect(hostile.repo)
    blob = _object(GiB, _random(38_800))
    oid = _commit_object(hostile, blob, GiB)
    hostile.git("push", "-q", "-u", "origin", "main")
    assert oid in origin.stored()
    target = hostile.env.root / "victim"
    result = hostile.run(
        "git", "clone", "-q", str(origin.bare), str(target), cwd=hostile.env.root, measure=True
    )
    assert one_line(result) == (
        f"git-theta: smudge failed: model.safetensors: parameter 'w': object {oid} is corrupt "
        "(object header declares 1073741824 bytes, more than its 38800-byte payload can hold)"
    )
    assert result.peak_kib < BOUNDED_KIB, result.peak_kib
    assert not (target / "model.safetensors").exists()
