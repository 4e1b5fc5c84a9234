from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from git_theta.errors import CheckpointError
from git_theta.formats.base import TensorSpec
from git_theta.formats.npz import NpzFormat
from git_theta.tensor import RawTensor

FMT = NpzFormat()


def split_file(path):
    with open(path, "rb") as f:
        split = FMT.split(f, source=str(path))
        return split.layout, [(n, t.dtype, t.shape, bytes(t.data)) for n, t in split.tensors]


def join_file(layout, tensors, path):
    raws = {n: RawTensor(d, s, b) for n, d, s, b in tensors}
    specs = {n: TensorSpec(t.dtype, t.shape) for n, t in raws.items()}
    with open(path, "wb") as f:
        FMT.join(f, layout, specs, lambda names: (raws[n] for n in names), source=str(path))


def round_trip(tmp_path, compressed=False, **arrays):
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "in.npz", **arrays)
    layout, tensors = split_file(tmp_path / "in.npz")
    join_file(layout, tensors, tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz", allow_pickle=False) as loaded:
        return layout, tensors, {k: loaded[k] for k in loaded.files}


def sniff_file(path):
    with open(path, "rb") as f:
        head = f.read(64)
        result = FMT.sniff(head, f)
        assert f.tell() == len(head)
        return result


DTYPES = [
    ("bool", "BOOL"),
    ("uint8", "U8"),
    ("int8", "I8"),
    ("<u2", "U16"),
    ("<i2", "I16"),
    ("<f2", "F16"),
    ("<u4", "U32"),
    ("<i4", "I32"),
    ("<f4", "F32"),
    ("<u8", "U64"),
    ("<i8", "I64"),
    ("<f8", "F64"),
    ("<c8", "C64"),
]


@pytest.mark.parametrize(("dtype", "name"), DTYPES, ids=[n for _, n in DTYPES])
def test_dtype_round_trip(dtype, name, tmp_path):
    array = np.arange(12).reshape(3, 4).astype(dtype)
    _, tensors, loaded = round_trip(tmp_path, w=array)
    assert tensors == [("w", name, (3, 4), array.tobytes())]
    assert loaded["w"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded["w"], array)


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_big_endian_and_fortran_arrays_are_stored_canonical_and_come_back_as_written(
    compressed, tmp_path
):
    array = np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3))
    big = (np.arange(5) - 2).astype(">i4")
    _, tensors, loaded = round_trip(tmp_path, compressed, w=array, b=big)
    # The tensor git-theta stores is little-endian C order, as every tensor is ...
    assert tensors[0] == ("w", "F32", (2, 3), np.arange(6, dtype="<f4").tobytes())
    assert tensors[1] == ("b", "I32", (5,), big.astype("<i4").tobytes())
    # ... and the file comes back as numpy wrote it: byte order, memory order, every byte.
    assert loaded["w"].dtype == np.dtype(">f4") and loaded["w"].flags.f_contiguous
    assert loaded["b"].dtype == np.dtype(">i4")
    np.testing.assert_array_equal(loaded["w"], array)
    assert (tmp_path / "out.npz").read_bytes() == (tmp_path / "in.npz").read_bytes()


def test_big_endian_scalars_and_empty_arrays_come_back_as_written(tmp_path):
    round_trip(
        tmp_path,
        s=np.array(3.5, ">f8"),
        e=np.zeros((0, 3), ">i2"),
        f=np.asfortranarray(np.ones((1, 4), ">u4")),
    )
    assert (tmp_path / "out.npz").read_bytes() == (tmp_path / "in.npz").read_bytes()


def test_plain_archives_keep_a_version_1_layout(tmp_path):
    layout, _, _ = round_trip(tmp_path, w=np.ones((2, 2), "<f4"), b=np.zeros(3, "|u1"))
    assert json.loads(layout)["version"] == 1
    assert (tmp_path / "out.npz").read_bytes() == (tmp_path / "in.npz").read_bytes()


def test_a_shape_larger_than_the_member_is_refused_before_allocation(tmp_path):
    # An 8 TiB shape in a member of a few bytes: the header is checked against the member's
    # size before anything is allocated.
    path = tmp_path / "huge.npz"
    np.savez(path, w=np.zeros(2, "<f8"))
    path.write_bytes(_fixed_header(path, (1 << 40,)))
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == (
        f"{path}: member 'w.npy': its header declares F64 [1099511627776] "
        "(8796093022208 bytes) but the member holds 16"
    )


def _fixed_header(path, shape):
    """An npz whose one member `w.npy` has header shape `shape` over the data np.savez wrote
    for a (2,) float64 array."""
    with zipfile.ZipFile(path) as archive:
        raw = archive.read("w.npy")
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': " + repr(shape) + ", }"
    text += " " * (118 - len(text)) + "\n"
    member = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + raw[128:]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("w.npy", member)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,", "not a dictionary"),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': ((((((2,)))))), }", "not one numpy"),
        (b"{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), } \"\"\"", "not a dictionary"),
        (b"{'descr': '<f8', 'fortran_order': 1, 'shape': (2,), }", "not one numpy"),
        (b"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", "twice"),
        (b"{'descr': '<f8', 'shape': (2,), }", "lacks fortran_order"),
        (b"{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", "unsupported dtype"),
    ],
)
def test_corrupt_npy_headers_are_one_line(header, message, tmp_path):
    # numpy's own reader evaluates such headers with ast/tokenize (TokenError, RecursionError).
    text = header + b" " * (118 - len(header)) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(16)
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", member)
    with pytest.raises(CheckpointError, match=message) as info:
        split_file(path)
    assert "\n" not in str(info.value)


def test_names_and_member_order_are_kept(tmp_path):
    arrays = {"z": np.ones(1), "a/b": np.zeros(2), "m.weight": np.ones(3)}
    layout, tensors, loaded = round_trip(tmp_path, **arrays)
    assert [n for n, *_ in tensors] == ["z", "a/b", "m.weight"]
    assert list(loaded) == ["z", "a/b", "m.weight"]
    assert json.loads(layout) == {
        "members": [{"compressed": False, "name": n} for n in ["z", "a/b", "m.weight"]],
        "version": 1,
    }


@pytest.mark.parametrize(
    ("compressed", "kind"), [(False, zipfile.ZIP_STORED), (True, zipfile.ZIP_DEFLATED)]
)
def test_compression_is_kept(compressed, kind, tmp_path):
    layout, _, _ = round_trip(tmp_path, compressed=compressed, w=np.zeros(1000))
    assert [m["compressed"] for m in json.loads(layout)["members"]] == [compressed]
    with zipfile.ZipFile(tmp_path / "out.npz") as archive:
        assert [i.compress_type for i in archive.infolist()] == [kind]


def test_split_join_split_is_stable_and_deterministic(tmp_path):
    layout, tensors, _ = round_trip(tmp_path, compressed=True, a=np.arange(5), b=np.eye(3))
    assert split_file(tmp_path / "out.npz") == (layout, tensors)
    join_file(layout, tensors, tmp_path / "again.npz")
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "out.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "out.npz") as archive:
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_join_to_a_pipe_gives_the_same_bytes(tmp_path):
    layout, tensors, _ = round_trip(tmp_path, w=np.arange(4))

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.data += b
            return len(b)

    pipe = Pipe()
    raws = {n: RawTensor(d, s, b) for n, d, s, b in tensors}
    specs = {n: TensorSpec(t.dtype, t.shape) for n, t in raws.items()}
    FMT.join(pipe, layout, specs, lambda names: (raws[n] for n in names), source="pipe")
    assert bytes(pipe.data) == (tmp_path / "out.npz").read_bytes()


def test_fresh_save_is_a_sorted_plain_npz(tmp_path):
    params = {
        "b": RawTensor("I32", (2,), np.array([1, 2], "<i4").tobytes()),
        "a": RawTensor("F32", (), np.array(1.5, "<f4").tobytes()),
    }
    FMT.save(params, tmp_path / "fresh.npz")
    with np.load(tmp_path / "fresh.npz", allow_pickle=False) as loaded:
        assert loaded.files == ["a", "b"]
        assert loaded["a"] == np.float32(1.5)
        np.testing.assert_array_equal(loaded["b"], [1, 2])
    with zipfile.ZipFile(tmp_path / "fresh.npz") as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}


def test_dtypes_numpy_lacks_are_refused_on_join(tmp_path):
    params = {"w": RawTensor("BF16", (1,), b"\x80\x3f")}
    with pytest.raises(CheckpointError) as info:
        FMT.save(params, tmp_path / "bf16.npz")
    assert str(info.value) == (
        f"{tmp_path / 'bf16.npz'}: parameter 'w': numpy has no BF16 dtype, so npz cannot hold it; "
        "save as safetensors instead"
    )
    assert list(tmp_path.iterdir()) == []


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_object_arrays_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    np.savez(path, ok=np.ones(1), evil=evil)
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == (
        f"{path}: member 'evil.npy' holds Python objects, which need unpickling; "
        "refusing to load it"
    )
    assert not marker.exists()


def test_structured_dtype_is_unsupported(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(path, rec=np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]))
    with pytest.raises(CheckpointError, match="parameter 'rec': unsupported dtype"):
        split_file(path)


def test_truncated_archive_is_a_checkpoint_error(tmp_path):
    np.savez(tmp_path / "ok.npz", w=np.ones(100))
    data = (tmp_path / "ok.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == f"{path}: not a readable npz archive: File is not a zip file"


def test_corrupt_member_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "flip.npz"
    np.savez(path, w=np.zeros(100))
    data = bytearray(path.read_bytes())
    offset = data.index(b"\x00" * 64, 200)  # inside the array's bytes, past the .npy header
    data[offset] = 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"^{path}: member 'w.npy' is corrupt or truncated: "):
        split_file(path)


def test_non_npy_member_is_refused(tmp_path):
    path = tmp_path / "mixed.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == f"{path}: member 'notes.txt' is not a .npy array"


@pytest.mark.parametrize(
    "layout",
    [b"not json", b"[]", b'{"version":1}', b'{"members":[{"name":1}],"version":1}'],
)
def test_malformed_layout_is_refused(layout, tmp_path):
    with pytest.raises(CheckpointError, match="the stored npz layout is malformed"):
        FMT.join(io.BytesIO(), layout, {}, lambda _: iter(()), source="x.npz")


def test_join_checks_names_against_specs(tmp_path):
    layout, tensors, _ = round_trip(tmp_path, w=np.ones(1))
    with pytest.raises(CheckpointError, match="does not match its parameters"):
        join_file(layout, [("v", *rest) for _, *rest in tensors], tmp_path / "bad.npz")


def test_sniff_tells_npz_from_other_zips_and_garbage(tmp_path):
    np.savez(tmp_path / "arrays.npz", w=np.ones(1))
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as archive:
        archive.writestr("w.npy.txt", "x")
    (tmp_path / "junk.bin").write_bytes(b"PK\x03\x04 but not really a zip file at all")
    assert sniff_file(tmp_path / "arrays.npz")
    assert not sniff_file(tmp_path / "docs.zip")
    assert not sniff_file(tmp_path / "junk.bin")
    assert not FMT.sniff((tmp_path / "arrays.npz").read_bytes()[:64], None)


def test_sniff_does_not_claim_torch_archives(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(1)}, tmp_path / "model.pt")
    assert not sniff_file(tmp_path / "model.pt")


@pytest.mark.parametrize("max_size", [16, 1 << 20], ids=["on-disk", "in-memory"])
def test_split_reads_a_spooled_temp_file(max_size):
    import tempfile

    buffer = io.BytesIO()
    np.savez_compressed(buffer, w=np.arange(8, dtype="<f4"))
    with tempfile.SpooledTemporaryFile(max_size=max_size) as spool:
        spool.write(buffer.getvalue())
        spool.seek(0)
        assert FMT.sniff(spool.read(64), spool)
        spool.seek(0)
        tensors = dict(FMT.split(spool, source="spool").tensors)
    assert bytes(tensors["w"].data) == np.arange(8, dtype="<f4").tobytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"npy": "\x93NUMPY\x01\x00garbage"}, "the stored .npy header is malformed"),
        ({"attr": -1}, "the stored npz layout is malformed"),
        ({"date": [1970, 1, 1, 0, 0, 0]}, "the stored npz layout is malformed"),
        ({"npy": 5}, "the stored npz layout is malformed"),
    ],
)
def test_a_hostile_recorded_member_is_refused(change, message, tmp_path):
    layout, tensors, _ = round_trip(tmp_path, w=np.arange(3, dtype=">i4"))
    document = json.loads(layout)
    document["members"][0].update(change)
    with pytest.raises(CheckpointError, match=message):
        join_file(json.dumps(document).encode(), tensors, tmp_path / "x.npz")


def test_a_recorded_header_must_match_the_tensor(tmp_path):
    layout, tensors, _ = round_trip(tmp_path, w=np.arange(3, dtype=">i4"))
    other = [("w", "I32", (4,), bytes(16))]
    with pytest.raises(CheckpointError, match="the stored .npy header does not match the tensor"):
        join_file(layout, other, tmp_path / "x.npz")
