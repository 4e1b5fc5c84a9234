from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from git_theta.errors import CheckpointError
from git_theta.formats.base import TensorSpec
from git_theta.formats.pytorch import PLACEHOLDER_PREFIX, ROOT_NAME, PyTorchFormat

torch = pytest.importorskip("torch")

FMT = PyTorchFormat()
REPO = Path(__file__).resolve().parents[3]


def split_file(path):
    with open(path, "rb") as f:
        split = FMT.split(f, source=str(path))
        return split.layout, [(n, t.dtype, t.shape, bytes(t.data)) for n, t in split.tensors]


def join_file(layout, tensors, path):
    from git_theta.tensor import RawTensor

    raws = {n: RawTensor(d, s, b) for n, d, s, b in tensors}
    specs = {n: TensorSpec(t.dtype, t.shape) for n, t in raws.items()}
    with open(path, "wb") as f:
        FMT.join(f, layout, specs, lambda names: (raws[n] for n in names), source=str(path))


def round_trip(obj, tmp_path):
    torch.save(obj, tmp_path / "in.pt")
    layout, tensors = split_file(tmp_path / "in.pt")
    join_file(layout, tensors, tmp_path / "out.pt")
    return layout, tensors, torch.load(tmp_path / "out.pt", weights_only=True)


def bits(t):
    return t.detach().reshape(-1).contiguous().view(torch.uint8)


def sniff_file(path, head_size=64):
    with open(path, "rb") as f:
        head = f.read(head_size)
        result = FMT.sniff(head, f)
        assert f.tell() == len(head)
        return result


DTYPES = [
    (torch.float32, "F32"),
    (torch.float16, "F16"),
    (torch.bfloat16, "BF16"),
    (torch.float64, "F64"),
    (torch.float8_e4m3fn, "F8_E4M3"),
    (torch.float8_e5m2, "F8_E5M2"),
    (torch.complex64, "C64"),
    (torch.int8, "I8"),
    (torch.int16, "I16"),
    (torch.int32, "I32"),
    (torch.int64, "I64"),
    (torch.uint8, "U8"),
    (torch.bool, "BOOL"),
]


@pytest.mark.parametrize(("dtype", "name"), DTYPES, ids=[n for _, n in DTYPES])
def test_dtype_round_trip(dtype, name, tmp_path):
    t = (torch.arange(12, dtype=torch.float32).reshape(3, 4) - 5).to(dtype)
    _, tensors, loaded = round_trip({"w": t}, tmp_path)
    assert [(n, d, s) for n, d, s, _ in tensors] == [("w", name, (3, 4))]
    assert tensors[0][3] == bytes(bits(t).numpy())
    assert loaded["w"].dtype == dtype
    assert torch.equal(bits(loaded["w"]), bits(t))


def test_raw_bytes_are_little_endian_c_order(tmp_path):
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    _, tensors, _ = round_trip({"w": t}, tmp_path)
    assert tensors[0][2:] == ((3, 2), np.arange(6, dtype="<f4").reshape(2, 3).T.copy().tobytes())


def test_empty_and_scalar_tensors(tmp_path):
    obj = {"empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5)}
    _, tensors, loaded = round_trip(obj, tmp_path)
    assert [(n, s) for n, _, s, _ in tensors] == [("empty", (0, 3)), ("scalar", ())]
    assert loaded["empty"].shape == (0, 3)
    assert loaded["scalar"].item() == 2.5


def test_flat_state_dict_names_and_metadata(tmp_path):
    model = torch.nn.Sequential(OrderedDict(layer=torch.nn.Linear(2, 3)))
    state = model.state_dict()
    _, tensors, loaded = round_trip(state, tmp_path)
    assert [n for n, *_ in tensors] == ["layer.weight", "layer.bias"]
    assert type(loaded) is OrderedDict
    assert loaded._metadata == state._metadata
    model.load_state_dict(loaded)


def test_nested_structure_round_trips(tmp_path):
    config = {"name": "tiny", "dims": (4, 2), "size": torch.Size([2, 3]), "none": None, "on": True}
    obj = {
        "model": OrderedDict([("a.weight", torch.ones(2, 2)), ("a.bias", torch.zeros(2))]),
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.full((2,), 0.5)}},
            "param_groups": [{"lr": 1e-3, "params": [0]}],
        },
        "layers": [torch.arange(3), (torch.ones(1), "tag")],
        "step": 3,
        "config": config,
    }
    _, tensors, loaded = round_trip(obj, tmp_path)
    assert [n for n, *_ in tensors] == [
        "model/a.weight",
        "model/a.bias",
        "optimizer/state/0/step",
        "optimizer/state/0/exp_avg",
        "layers/0",
        "layers/1/0",
    ]
    assert loaded["step"] == 3
    assert loaded["config"] == config
    assert type(loaded["config"]["size"]) is torch.Size
    assert type(loaded["model"]) is OrderedDict
    assert loaded["optimizer"]["param_groups"] == [{"lr": 1e-3, "params": [0]}]
    assert list(loaded["optimizer"]["state"]) == [0]
    assert type(loaded["layers"][1]) is tuple and loaded["layers"][1][1] == "tag"
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], torch.full((2,), 0.5))


def test_bare_tensor_is_one_parameter(tmp_path):
    _, tensors, loaded = round_trip(torch.ones(2), tmp_path)
    assert [n for n, *_ in tensors] == [ROOT_NAME]
    assert torch.equal(loaded, torch.ones(2))


def test_parameters_and_requires_grad_come_back(tmp_path):
    obj = {
        "p": torch.nn.Parameter(torch.ones(2)),
        "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False),
        "g": torch.ones(2, requires_grad=True),
        "plain": torch.ones(2),
    }
    _, _, loaded = round_trip(obj, tmp_path)
    kinds = {k: (isinstance(v, torch.nn.Parameter), v.requires_grad) for k, v in loaded.items()}
    assert kinds == {
        "p": (True, True),
        "frozen": (True, False),
        "g": (False, True),
        "plain": (False, False),
    }


def test_split_join_split_is_stable(tmp_path):
    obj = {"model": torch.nn.Linear(3, 2).state_dict(), "step": 7, "cfg": {"lr": 0.1}}
    layout, tensors, _ = round_trip(obj, tmp_path)
    assert split_file(tmp_path / "out.pt") == (layout, tensors)
    join_file(layout, tensors, tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == (tmp_path / "out.pt").read_bytes()


def test_shared_storage_comes_back_as_separate_tensors(tmp_path):
    weight = torch.arange(4.0)
    _, tensors, loaded = round_trip({"emb": weight, "head": weight, "half": weight[2:]}, tmp_path)
    assert [(n, s) for n, _, s, _ in tensors] == [("emb", (4,)), ("head", (4,)), ("half", (2,))]
    assert torch.equal(loaded["half"], torch.tensor([2.0, 3.0]))


def test_fresh_join_writes_a_sorted_flat_dict(tmp_path):
    from git_theta.tensor import RawTensor

    params = {
        "b/x": RawTensor("F32", (2,), np.array([1, 2], "<f4").tobytes()),
        "a": RawTensor("BF16", (1,), b"\x80\x3f"),
    }
    FMT.save(params, tmp_path / "fresh.pt")
    loaded = torch.load(tmp_path / "fresh.pt", weights_only=True)
    assert list(loaded) == ["a", "b/x"]
    assert loaded["a"].item() == 1.0
    assert {
        n: (t.dtype, t.shape, bytes(t.data)) for n, t in FMT.load(tmp_path / "fresh.pt").items()
    } == {n: (t.dtype, t.shape, bytes(t.data)) for n, t in params.items()}


def test_legacy_pickle_loads_and_joins_as_zip(tmp_path):
    torch.save({"w": torch.ones(2, 2)}, tmp_path / "in.pt", _use_new_zipfile_serialization=False)
    assert sniff_file(tmp_path / "in.pt")
    layout, tensors = split_file(tmp_path / "in.pt")
    assert [(n, d, s) for n, d, s, _ in tensors] == [("w", "F32", (2, 2))]
    join_file(layout, tensors, tmp_path / "out.pt")
    assert (tmp_path / "out.pt").read_bytes()[:4] == b"PK\x03\x04"
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True)["w"], torch.ones(2, 2))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Config:
    pass


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_malicious_pickle_is_refused_and_never_runs(zipped, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    obj = {"w": torch.ones(2), "x": _Payload(marker)}
    torch.save(obj, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == (
        f"{path}: refused to load: the pickle calls {os.system.__module__}.system "
        "(only weights_only data is loaded)"
    )
    assert not marker.exists()


def test_unknown_class_is_refused(tmp_path):
    path = tmp_path / "cfg.pt"
    torch.save({"cfg": Config()}, path)
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == (
        f"{path}: refused to load: the pickle calls {Config.__module__}.Config "
        "(only weights_only data is loaded)"
    )


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_zip_is_a_checkpoint_error(cut, tmp_path):
    torch.save({"w": torch.ones(64)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: corrupt or truncated PyTorch checkpoint: ")
    assert "\n" not in message


@pytest.mark.parametrize("data", [b"", b"not a checkpoint", b"\x80\x02garbage"])
def test_garbage_is_a_checkpoint_error(data, tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=f"^{path}: ") as info:
        split_file(path)
    assert "\n" not in str(info.value)


def test_two_paths_to_one_name_are_refused(tmp_path):
    path = tmp_path / "dup.pt"
    torch.save({"a/b": torch.ones(1), "a": {"b": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == f"{path}: two entries map to parameter 'a/b'; rename one of them"


@pytest.mark.parametrize(
    ("tensor", "problem"),
    [
        (torch.ones(2, dtype=torch.complex128), "unsupported dtype torch.complex128"),
        (torch.ones(2).to_sparse(), "torch.sparse_coo tensors are not supported; call .to_dense()"),
    ],
    ids=["complex128", "sparse"],
)
def test_unsupported_tensors_name_the_parameter(tensor, problem, tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"ok": torch.ones(1), "odd": tensor}, path)
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == f"{path}: parameter 'odd': {problem}"


def test_placeholder_lookalike_string_is_refused(tmp_path):
    path = tmp_path / "sneaky.pt"
    torch.save({"w": torch.ones(1), "note": PLACEHOLDER_PREFIX + ":w"}, path)
    with pytest.raises(CheckpointError, match="'note' holds a string that starts like"):
        split_file(path)


def test_join_checks_names_against_specs(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "in.pt")
    layout, tensors = split_file(tmp_path / "in.pt")
    renamed = [("v", *rest) for _, *rest in tensors]
    with pytest.raises(CheckpointError, match="does not match its parameters"):
        join_file(layout, renamed, tmp_path / "out.pt")


def test_join_checks_dtype_against_spec(tmp_path):
    from git_theta.tensor import RawTensor

    layout = split_file_bytes({"w": torch.ones(1)}, tmp_path)
    specs = {"w": TensorSpec("F32", (1,))}
    with pytest.raises(CheckpointError, match="'w': got F16 \\[1\\], expected F32 \\[1\\]"):
        FMT.join(
            io.BytesIO(),
            layout,
            specs,
            lambda _: iter([RawTensor("F16", (1,), b"\0<")]),
            source="x",
        )


def split_file_bytes(obj, tmp_path):
    torch.save(obj, tmp_path / "src.pt")
    return split_file(tmp_path / "src.pt")[0]


def test_sniff_tells_torch_from_npz_and_garbage(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "model.pt")
    np.savez(tmp_path / "arrays.npz", w=np.ones(1))
    (tmp_path / "junk.bin").write_bytes(b"PK\x03\x04 but not really a zip file at all")
    assert sniff_file(tmp_path / "model.pt")
    assert not sniff_file(tmp_path / "arrays.npz")
    assert not sniff_file(tmp_path / "junk.bin")
    assert not FMT.sniff((tmp_path / "model.pt").read_bytes()[:64], None)


def test_package_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from git_theta.formats import all_formats\n"
        "fmt = all_formats()['pytorch']\n"
        "assert not fmt.sniff(b'junk', None)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)


@pytest.mark.parametrize("max_size", [16, 1 << 20], ids=["on-disk", "in-memory"])
def test_split_reads_a_spooled_temp_file(max_size):
    import tempfile

    buffer = io.BytesIO()
    torch.save({"w": torch.arange(8.0)}, buffer)
    with tempfile.SpooledTemporaryFile(max_size=max_size) as spool:
        spool.write(buffer.getvalue())
        spool.seek(0)
        tensors = dict(FMT.split(spool, source="spool").tensors)
    assert bytes(tensors["w"].data) == np.arange(8, dtype="<f4").tobytes()


def test_a_flipped_byte_in_a_tensor_fails_the_archive_crc(tmp_path):
    # torch.load reads tensor bytes unchecked: without the CRC check this file would load,
    # with one weight silently changed.
    torch.save({"w": torch.arange(256, dtype=torch.float32)}, tmp_path / "ok.pt")
    data = bytearray((tmp_path / "ok.pt").read_bytes())
    start = data.index(torch.arange(256, dtype=torch.float32).numpy().tobytes())
    data[start + 100] ^= 0x01
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        split_file(path)
    assert str(info.value) == (
        f"{path}: corrupt PyTorch checkpoint: archive member 'ok/data/0' fails its CRC-32 check"
    )


def test_without_torch_a_pytorch_checkpoint_says_how_to_get_it(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(4)}, path)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from git_theta.errors import CheckpointError\n"
        "from git_theta.formats import all_formats\n"
        "fmt = all_formats()['pytorch']\n"
        f"f = open({str(path)!r}, 'rb')\n"
        "try:\n"
        f"    fmt.split(f, source={str(path)!r})\n"
        "except CheckpointError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, env=env, cwd=REPO, capture_output=True
    )
    assert out.stdout.decode().strip() == (
        f"{path}: a PyTorch checkpoint; reading it needs torch (pip install 'git-theta[torch]')"
    )
