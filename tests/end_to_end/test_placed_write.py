"""`Smudger.write_file` writes the bytes `smudge` streams to git, for every format, dtype and
kind of entry, and a failure part way leaves the target as it was and no temp file behind.

Safetensors goes through the placed path (each tensor pwritten at its offset by a worker);
the other formats through `join`. Every checkpoint is committed in a real repository, so the
objects read are the store's own.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from git_theta import metadata as md
from git_theta.context import RepoContext
from git_theta.errors import CorruptObjectError, MissingObjectError
from git_theta.formats import get_format
from git_theta.git.repo import Repo
from git_theta.smudge import Smudger
from testing.checkpoints import ALL_DTYPES, random_params, write_safetensors
from testing.gitenv import GitEnv
from testing.mounts import in_private_mount
from testing.param_repo import ParamRepo
from testing.training import train_step

FLAX_FIXTURE = Path(__file__).parents[1] / "fixtures" / "flax" / "tiny.msgpack"


def _commit(env: GitEnv, repo: Path, name: str) -> bytes:
    env.git("add", name, cwd=repo)
    env.git("commit", "-q", "-m", f"add {name}", cwd=repo)
    return (repo / name).read_bytes()


def _both_ways(
    repo: Path, name: str, rev: str = "HEAD", *, workers: int = 2
) -> tuple[bytes, bytes]:
    """(what smudge streams, what write_file writes) for `name` at `rev`."""
    data = subprocess_show(repo, f"{rev}:{name}")
    with RepoContext(Repo(repo), workers=workers, downloader=lambda refs: None) as ctx:
        smudger = Smudger(ctx)
        streamed = io.BytesIO()
        smudger.smudge(data, name, streamed)
        target = repo / "written.out"
        smudger.write_file(data, name, target)
    written = target.read_bytes()
    target.unlink()
    return streamed.getvalue(), written


def subprocess_show(repo: Path, spec: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", spec], cwd=repo, capture_output=True, check=True
    ).stdout


def test_safetensors_is_placed_and_others_are_joined():
    assert get_format("safetensors").place(None, {}, source="x") is not None
    for name in ("pytorch", "npz", "flax"):
        assert get_format(name).place(None, {}, source="x") is None


@pytest.mark.parametrize("dtype", sorted(ALL_DTYPES))
def test_every_dtype_writes_what_smudge_streams(gitenv, dtype):
    repo = gitenv.init_repo(track=("*.safetensors",))
    shapes = {
        "t": (dtype, (3, 5)),
        "scalar": (dtype, ()),
        "empty": (dtype, (0, 4)),
        "big": (dtype, (300, 1024)),  # several 4 MiB-ish jobs' worth for 8-byte dtypes
    }
    params = random_params(shapes)
    params["zeros"] = (dtype, np.zeros((64, 64), dtype=params["t"][1].dtype))
    original = write_safetensors(repo / "m.safetensors", params, metadata={"format": "pt"})
    _commit(gitenv, repo, "m.safetensors")
    streamed, written = _both_ways(repo, "m.safetensors")
    assert written == streamed == original


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_many_tensors_in_an_odd_header_order_on_any_number_of_workers(gitenv, workers):
    repo = gitenv.init_repo(track=("*.safetensors",))
    shapes = {f"p{i:03d}": (("F32", "BF16", "I8")[i % 3], (i % 7, 97)) for i in range(150)}
    shapes["large"] = ("F32", (1024, 1100))  # > one 4 MiB block and > one batch
    params = dict(reversed(random_params(shapes).items()))
    original = write_safetensors(repo / "m.safetensors", params, metadata={"b": "2"}, pad=False)
    _commit(gitenv, repo, "m.safetensors")
    streamed, written = _both_ways(repo, "m.safetensors", workers=workers)
    assert written == streamed == original


def test_a_checkpoint_without_tensors(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    original = write_safetensors(repo / "m.safetensors", {}, metadata={"k": "v"})
    _commit(gitenv, repo, "m.safetensors")
    streamed, written = _both_ways(repo, "m.safetensors")
    assert written == streamed == original


def test_update_chains_write_what_smudge_streams(gitenv):
    shapes = {
        "a.weight": ("F32", (256, 256)),
        "b.weight": ("BF16", (256, 256)),
        "c.weight": ("F16", (128, 128)),
        "sparse.weight": ("F32", (512, 64)),
        "step": ("I64", ()),
    }
    r = ParamRepo(gitenv, shapes)
    r.commit("base")
    r.git("config", "theta.updateType", "auto")
    params = train_step(r.params, 1e-3)
    dtype, array = r.params["sparse.weight"]
    touched = array.copy()
    touched[3, :5] += 1  # a handful of elements: stored sparse
    params["sparse.weight"] = (dtype, touched)
    params["step"] = r.params["step"]
    r.commit("fine-tune", params)
    kinds = {
        name: [u["type"] for u in entry.get("updates", [])] for name, entry in r.meta().items()
    }
    assert {"delta", "sparse"} <= {k for ks in kinds.values() for k in ks}, kinds
    expected = r.path.read_bytes()
    streamed, written = _both_ways(r.repo, "model.safetensors")
    assert written == streamed == expected


def test_npz_pytorch_and_flax_write_what_smudge_streams(gitenv):
    torch = pytest.importorskip("torch")
    repo = gitenv.init_repo(track=("*.npz", "*.pt", "*.msgpack"))
    rng = np.random.default_rng(0)
    np.savez(repo / "a.npz", w=rng.standard_normal((8, 4)).astype(np.float32), e=np.zeros(0))
    np.savez_compressed(repo / "c.npz", ids=np.arange(50))
    torch.save({"w": torch.randn(4, 3), "b": torch.randn(4).bfloat16(), "n": 3}, repo / "m.pt")
    shutil.copy(FLAX_FIXTURE, repo / "f.msgpack")
    for name in ("a.npz", "c.npz", "m.pt", "f.msgpack"):
        original = _commit(gitenv, repo, name)
        streamed, written = _both_ways(repo, name)
        assert written == streamed, name
        # torch.save names its archive after the file (`m/`), join after none (`archive/`).
        assert name == "m.pt" or written == original, name


def test_the_target_keeps_its_mode(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    target = repo / "m.safetensors"
    original = write_safetensors(target, random_params({"w": ("F32", (64, 64))}))
    _commit(gitenv, repo, "m.safetensors")
    os.chmod(target, 0o640)
    target.write_bytes(b"old")
    with RepoContext(Repo(repo), workers=2) as ctx:
        Smudger(ctx).write_file(subprocess_show(repo, "HEAD:m.safetensors"), "m", target)
    assert target.read_bytes() == original
    assert target.stat().st_mode & 0o777 == 0o640


def _store_file(repo: Path, oid: str) -> Path:
    return repo / ".git" / "theta" / "objects" / oid[:2] / oid[2:4] / oid


@pytest.mark.parametrize("workers", [1, 2])
def test_a_corrupt_object_mid_way_leaves_the_target_and_no_temp_file(gitenv, workers):
    repo = gitenv.init_repo(track=("*.safetensors",))
    shapes = {f"layer.{i:02d}": ("F32", (256, 256)) for i in range(12)}
    write_safetensors(repo / "m.safetensors", random_params(shapes))
    _commit(gitenv, repo, "m.safetensors")
    data = subprocess_show(repo, "HEAD:m.safetensors")
    last = md.decode(data).params["layer.11"].object.oid  # the last tensor in the file
    obj = _store_file(repo, last)
    obj.chmod(0o644)
    blob = bytearray(obj.read_bytes())
    blob[-100] ^= 0xFF  # one flipped bit in the payload of one tensor's object
    obj.write_bytes(bytes(blob))
    target = repo / "m.safetensors"
    target.write_bytes(b"the previous version")
    before = sorted(os.listdir(repo))
    with RepoContext(Repo(repo), workers=workers, downloader=lambda refs: None) as ctx:
        with pytest.raises(CorruptObjectError, match="layer.11"):
            Smudger(ctx).write_file(data, "m.safetensors", target)
    assert target.read_bytes() == b"the previous version"
    assert sorted(os.listdir(repo)) == before


def test_a_missing_object_leaves_the_target_and_no_temp_file(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    write_safetensors(repo / "m.safetensors", random_params({"w": ("F32", (64, 64))}))
    _commit(gitenv, repo, "m.safetensors")
    data = subprocess_show(repo, "HEAD:m.safetensors")
    _store_file(repo, md.decode(data).params["w"].object.oid).unlink()
    target = repo / "m.safetensors"
    target.write_bytes(b"the previous version")
    before = sorted(os.listdir(repo))
    with RepoContext(Repo(repo), workers=2, downloader=lambda refs: None) as ctx:
        with pytest.raises(MissingObjectError, match="parameter.s. w;"):
            Smudger(ctx).write_file(data, "m.safetensors", target)
    assert target.read_bytes() == b"the previous version"
    assert sorted(os.listdir(repo)) == before


def test_repository_save_with_checkout_writes_the_checkpoint(gitenv, monkeypatch):
    from git_theta.api import Repository

    for key, value in gitenv.env.items():
        monkeypatch.setenv(key, value)
    repo = gitenv.init_repo(track=("*.safetensors",))
    write_safetensors(repo / "m.safetensors", random_params({"w": ("F32", (4, 4))}))
    _commit(gitenv, repo, "m.safetensors")
    state = {"w": np.arange(4096, dtype=np.float32).reshape(64, 64), "b": np.ones(3, np.int64)}
    with Repository(repo) as r:
        r.save(state, "m.safetensors", message="v2", checkout=True)
    assert gitenv.git("status", "--porcelain", cwd=repo) == ""
    streamed, written = _both_ways(repo, "m.safetensors")
    assert written == streamed == (repo / "m.safetensors").read_bytes()


def test_progress_is_shown_on_the_placed_path(gitenv, monkeypatch, capsys):
    repo = gitenv.init_repo(track=("*.safetensors",))
    shapes = {f"w{i}": ("F32", (256, 256)) for i in range(8)}
    write_safetensors(repo / "m.safetensors", random_params(shapes))
    _commit(gitenv, repo, "m.safetensors")
    monkeypatch.setenv("GIT_THETA_PROGRESS", "1")  # a bar even though stderr is no terminal
    data = subprocess_show(repo, "HEAD:m.safetensors")
    with RepoContext(Repo(repo), workers=2) as ctx:
        Smudger(ctx).write_file(data, "m.safetensors", repo / "out")
    err = capsys.readouterr().err
    assert "git-theta: writing m.safetensors" in err
    assert "/2.00M" in err  # the bar's total: every tensor's bytes


def test_a_full_disk_leaves_the_target_and_no_temp_file(gitenv):
    repo = gitenv.init_repo(track=("*.safetensors",))
    shapes = {f"t{i}": ("F32", (256, 256)) for i in range(4)}  # 1 MiB: more than the disk
    write_safetensors(repo / "m.safetensors", random_params(shapes))
    _commit(gitenv, repo, "m.safetensors")
    (repo / "meta").write_bytes(subprocess_show(repo, "HEAD:m.safetensors"))
    write = (
        "import pathlib; from git_theta.context import RepoContext; "
        "from git_theta.git.repo import Repo; from git_theta.smudge import Smudger; "
        "Smudger(RepoContext(Repo('.'))).write_file("
        "pathlib.Path('meta').read_bytes(), 'm.safetensors', 'full/m.safetensors')"
    )
    script = (
        f"printf old > full/m.safetensors && {shlex.quote(sys.executable)} -c "
        f"{shlex.quote(write)}; echo exit=$?; cat full/m.safetensors; echo; ls -A full"
    )
    proc = in_private_mount(gitenv, repo / "full", script, cwd=repo, size="256k")
    status, content, listing = proc.stdout.decode().splitlines()
    assert status == "exit=1", proc.stderr.decode()
    assert "No space left on device" in proc.stderr.decode()
    assert (content, listing) == ("old", "m.safetensors")
