"""`git diff` / `git show` / `git log -p` and `git theta diff` on tracked checkpoints."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from git_theta import metadata as md
from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import GitEnv

MODEL = "model.safetensors"
NOISY = "noisy.safetensors"

BASE = {
    "embed.weight": ("F32", (np.arange(16, dtype="<f4") / 16).reshape(4, 4)),
    "head.weight": ("F32", np.ones((2, 4), "<f4")),
    "norm.scale": ("F16", np.ones(4, "<f2")),
    "step": ("I64", np.array(100, "<i8")),
    "mask": ("BOOL", np.array([True, False, True, False])),
}
NOISY_SHAPES = {
    "w.f32": ("F32", (64, 48)),
    "w.bf16": ("BF16", (32, 40)),
    "w.f16": ("F16", (300,)),
    "w.i32": ("I32", (10, 10)),
    "w.u8": ("U8", (50,)),
}


def _kinds():
    """Each commit after `base` makes one kind of change on top of the previous one."""
    params = dict(BASE)
    embed = params["embed.weight"][1].copy()
    embed[0] += 0.25
    params.update({"embed.weight": ("F32", embed), "step": ("I64", np.array(101, "<i8"))})
    yield "modified", dict(params)
    params["extra.bias"] = ("F32", np.zeros(3, "<f4"))
    yield "added", dict(params)
    del params["mask"]
    yield "removed", dict(params)
    params["norm.scale"] = ("F32", np.ones(4, "<f4"))
    yield "dtype", dict(params)
    params["head.weight"] = ("F32", np.ones((4, 2), "<f4"))
    yield "shape", dict(params)


def _noisy_v2(v1):
    rng = np.random.default_rng(7)
    out = {}
    for name, (dtype, array) in v1.items():
        if dtype == "BF16":
            f = (array.astype(np.uint32) << 16).view(np.float32)
            f = f + rng.standard_normal(f.shape).astype(np.float32) * 0.01
            out[name] = (dtype, (f.view(np.uint32) >> 16).astype(np.uint16))
        elif dtype in ("I32", "U8"):
            delta = rng.integers(-3, 4, array.shape) * (rng.random(array.shape) < 0.5)
            out[name] = (dtype, (array.astype(np.int64) + delta).astype(array.dtype))
        else:
            out[name] = (
                dtype,
                (array + rng.standard_normal(array.shape) * 0.01).astype(array.dtype),
            )
    return out


class History:
    def __init__(self, root: Path) -> None:
        self.env = GitEnv(root)
        self.repo = self.env.init_repo(track=("*.safetensors",))
        self.noisy_v1 = random_params(NOISY_SHAPES, seed=3)
        self.noisy_v2 = _noisy_v2(self.noisy_v1)
        write_safetensors(self.repo / NOISY, self.noisy_v1)
        (self.repo / "README.md").write_text("notes\n")
        self.commit("base", BASE, "README.md", NOISY)
        for tag, params in _kinds():
            if tag == "added":
                (self.repo / "README.md").write_text("notes\nmore notes\n")
            self.commit(tag, params, "README.md")
        write_safetensors(self.repo / NOISY, self.noisy_v2)
        self.git("commit", "-q", "-am", "noisy")
        self.git("tag", "noisy")

    def git(self, *args: str, check: bool = True) -> str:
        return self.env.git(*args, cwd=self.repo, check=check)

    def theta(self, *args: str, check: bool = True):
        return self.env.theta(*args, cwd=self.repo, check=check)

    def commit(self, tag: str, params, *extra: str) -> None:
        write_safetensors(self.repo / MODEL, params)
        self.git("add", MODEL, *extra)
        self.git("commit", "-q", "-m", tag)
        self.git("tag", tag)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    return History(tmp_path_factory.mktemp("diff-history"))


# Stored sizes depend on the object encoding, so goldens show them as <size>; one test below
# checks the sizes themselves against the metadata.
_SIZE = re.compile(r"\b\d+(\.\d)? (B|KiB|MiB|GiB)\b")


def normalize(text: str) -> str:
    return "\n".join(
        re.sub(r" {2,}", "  ", _SIZE.sub("<size>", line)) for line in text.splitlines()
    )


GOLDEN = {
    "modified": """\
diff --git-theta a/model.safetensors b/model.safetensors
model.safetensors: 2 modified, 3 unchanged (5 -> 5 params; <size> new objects)
  status  parameter  dtype  shape  update  stored  ||delta||  rel.change  max|delta|  cosine  changed  note
  modified  embed.weight  F32  4x4  dense  <size>  0.5  0.2272  0.25  0.976220  25%
  modified  step  I64  scalar  dense  <size>  -  -  1  -  100%""",
    "added": """\
diff --git-theta a/model.safetensors b/model.safetensors
model.safetensors: 1 added, 5 unchanged (5 -> 6 params; <size> new objects)
  status  parameter  dtype  shape  update  stored  ||delta||  rel.change  max|delta|  cosine  changed  note
  added  extra.bias  F32  3  dense  <size>""",
    "removed": """\
diff --git-theta a/model.safetensors b/model.safetensors
model.safetensors: 1 removed, 5 unchanged (6 -> 5 params)
  status  parameter  dtype  shape  update  stored  ||delta||  rel.change  max|delta|  cosine  changed  note
  removed  mask  BOOL  4  dense  <size>""",
    "dtype": """\
diff --git-theta a/model.safetensors b/model.safetensors
model.safetensors: 1 modified, 4 unchanged (5 -> 5 params; <size> new objects)
  status  parameter  dtype  shape  update  stored  ||delta||  rel.change  max|delta|  cosine  changed  note
  modified  norm.scale  F16->F32  4  dense  <size>  0  0  0  1.000000  0%""",
    "shape": """\
diff --git-theta a/model.safetensors b/model.safetensors
model.safetensors: 1 modified, 4 unchanged (5 -> 5 params; <size> new objects)
  status  parameter  dtype  shape  update  stored  ||delta||  rel.change  max|delta|  cosine  changed  note
  modified  head.weight  F32  2x4->4x2  dense  <size>  -  -  -  -  -  shape changed""",
}


def test_git_log_p_golden_for_each_kind_of_change(history):
    out = history.git(
        "log", "-p", "--ext-diff", "--reverse", "--format=@@ %s", "base..shape", "--", MODEL
    )
    blocks = {
        chunk.split("\n", 1)[0]: chunk.split("\n", 1)[1].strip("\n")
        for chunk in out.split("@@ ")[1:]
    }
    assert list(blocks) == list(GOLDEN)
    for kind, golden in GOLDEN.items():
        assert normalize(blocks[kind]) == golden, kind


def test_git_diff_and_git_show_print_the_same_summary(history):
    diff = history.git("diff", "base", "modified", "--", MODEL)
    assert normalize(diff) == GOLDEN["modified"]
    show = history.git("show", "--ext-diff", "--format=", "modified", "--", MODEL)
    assert show.strip("\n") == diff.strip("\n")
    # Columns line up in the real output, and stored sizes are the objects' sizes.
    lines = diff.splitlines()
    assert lines[2].index("parameter") == lines[3].index("embed.weight") == lines[4].index("step")
    meta = md.decode(history.git("show", f"modified:{MODEL}").encode())
    assert f"  {meta.params['step'].object.size} B  " in lines[4]


def _numpy_float(dtype: str, array: np.ndarray) -> np.ndarray:
    if dtype == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32).astype(np.float64).ravel()
    return array.astype(np.float64).ravel()


def test_json_values_equal_numpy_on_the_real_tensors(history):
    proc = history.theta("diff", "shape", "noisy", "--format", "json")
    doc = json.loads(proc.stdout)
    (f,) = doc["files"]
    assert (doc["old"], doc["new"], f["path"], f["status"]) == ("shape", "noisy", NOISY, "modified")
    got = {p["name"]: p for p in f["params"]}
    assert set(got) == set(NOISY_SHAPES)
    for name, (dtype, old) in history.noisy_v1.items():
        new = history.noisy_v2[name][1]
        p = got[name]
        assert (p["status"], p["dtype"], p["shape"]) == ("modified", dtype, list(old.shape))
        assert p["fraction_changed"] == pytest.approx(np.mean(old != new), abs=0)
        o, n = _numpy_float(dtype, old), _numpy_float(dtype, new)
        d = n - o
        assert p["max_abs_delta"] == pytest.approx(np.abs(d).max(), rel=1e-12)
        if dtype in ("I32", "U8"):
            assert p["delta_l2"] is None and p["cosine"] is None
            continue
        assert p["delta_l2"] == pytest.approx(np.linalg.norm(d), rel=1e-9)
        assert p["relative_change"] == pytest.approx(
            np.linalg.norm(d) / np.linalg.norm(o), rel=1e-9
        )
        cosine = o @ n / (np.linalg.norm(o) * np.linalg.norm(n))
        assert p["cosine"] == pytest.approx(cosine, rel=1e-12)
        assert (p["nan_count"], p["inf_count"]) == (0, 0)
    rel = [p["relative_change"] for p in f["params"] if p["relative_change"] is not None]
    assert rel == sorted(rel, reverse=True)


def test_param_filter_top_and_markdown(history):
    text = history.theta(
        "diff", "base", "shape", "--param", "*.weight", "--top", "1", "--", MODEL
    ).stdout.decode()
    assert text.splitlines()[1].startswith("model.safetensors: 2 modified (5 -> 5 params")
    assert "embed.weight" in text and "head.weight" not in text
    assert text.endswith("  ... 1 more parameter(s) not shown (--top 1)\n")
    markdown = history.theta("diff", "base..shape", "--format", "markdown").stdout.decode()
    assert markdown.startswith(
        "## Checkpoint changes: `base` → `shape`\n\n### `model.safetensors`\n"
    )
    assert "| added | `extra.bias` | F32 | 3 |" in markdown


def test_working_tree_against_index_and_a_revision(history):
    path = history.repo / MODEL
    saved = path.read_bytes()
    params = dict(_kinds())["shape"]
    params["step"] = ("I64", np.array(250, "<i8"))
    write_safetensors(path, params)
    try:
        text = history.theta("diff").stdout.decode()
        assert normalize(text).splitlines()[1:] == [
            "model.safetensors: 1 modified, 4 unchanged (5 -> 5 params)",
            "  status  parameter  dtype  shape  update  stored  ||delta||  rel.change  max|delta|  cosine  changed  note",
            "  modified  step  I64  scalar  dense  -  -  -  149  -  100%",
        ]
        assert history.git("diff") == text  # the driver reads the work tree file the same way
        one_rev = history.theta("diff", "base", "--", MODEL).stdout.decode()
        assert "(5 -> 5 params)" in one_rev and "  step  " in one_rev and "mask" in one_rev
    finally:
        path.write_bytes(saved)
    assert history.theta("diff").stdout == b""


def test_untracked_path_gets_gits_plain_diff(history):
    plain = history.git("diff", "modified", "added", "--", "README.md")
    assert plain.startswith("diff --git a/README.md b/README.md")
    ours = history.theta("diff", "modified", "added", "--", "README.md").stdout.decode()
    assert ours == plain
    both = history.theta("diff", "modified", "added").stdout.decode()
    assert both.startswith("diff --git-theta a/model.safetensors") and both.endswith(plain)


def test_nonexistent_revision_gives_gits_message(history):
    git = history.git("diff", "nope", "--", check=False)
    proc = history.env.run(["git", "diff", "nope", "--"], cwd=history.repo, check=False)
    (git_line,) = proc.stderr.decode().splitlines()
    assert git_line == "fatal: bad revision 'nope'" and git == ""
    for args in (["nope"], ["base", "nope"], ["nope...base"]):
        ours = history.theta("diff", *args, check=False)
        assert ours.returncode == 1
        assert b"Traceback" not in ours.stderr
        assert ours.stderr.decode().startswith("git-theta: error: ")
    assert history.theta("diff", "nope", check=False).stderr.decode() == (
        "git-theta: error: bad revision 'nope'\n"
    )


def test_missing_objects_are_named_with_the_fetch_command(history):
    meta = md.decode(history.git("show", f"modified:{MODEL}").encode())
    # The last object the modified version needs (its own: the base may be shared with the
    # version before when the change is stored as an update).
    oid = meta.params["embed.weight"].objects()[-1].oid
    obj = history.repo / ".git" / "theta" / "objects" / oid[:2] / oid[2:4] / oid
    aside = obj.with_name(oid + ".aside")
    shutil.move(obj, aside)
    try:
        proc = history.theta("diff", "base", "modified", check=False)
    finally:
        shutil.move(aside, obj)
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        "git-theta: error: objects not in the local store for 1 parameter(s): "
        "model.safetensors: embed.weight (modified:model.safetensors); "
        "fetch them with `git theta fetch`\n"
    )
