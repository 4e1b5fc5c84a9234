"""`git show` and `git log -p` without --ext-diff: git's line diff of our textconv output.

git runs attribute-based external diff drivers for those commands only with --ext-diff, but
it runs the textconv (and caches its output, `diff.theta.cachetextconv`). These tests run
the real commands and read what a user sees.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from git_theta.diffing.listing import LAYOUT
from git_theta.git.config import INSTALLED_CONFIG
from git_theta.tensor import RawTensor, content_hash
from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv

MODEL = "model.safetensors"
NOTES = "refs/notes/textconv/theta"

BASE = {
    "embed.weight": ("F32", (np.arange(16, dtype="<f4") / 16).reshape(4, 4)),
    "head.weight": ("F32", np.ones((2, 4), "<f4")),
    "norm.scale": ("F16", np.ones(4, "<f2")),
    "step": ("I64", np.array(100, "<i8")),
    "mask": ("BOOL", np.array([True, False, True, False])),
}


def _kinds():
    """(tag, params, safetensors __metadata__): each a change on top of the previous one."""
    params = dict(BASE)
    embed = params["embed.weight"][1].copy()
    embed[0] += 0.25
    params.update({"embed.weight": ("F32", embed), "step": ("I64", np.array(101, "<i8"))})
    yield "modified", dict(params), None
    params["extra.bias"] = ("F32", np.zeros(3, "<f4"))
    yield "added", dict(params), None
    del params["mask"]
    yield "removed", dict(params), None
    params["norm.scale"] = ("F32", np.ones(4, "<f4"))
    yield "dtype", dict(params), None
    params["head.weight"] = ("F32", np.ones((4, 2), "<f4"))
    yield "shape", dict(params), None
    params["norm.scale"] = ("F32", np.array([1, np.nan, 1, np.inf], "<f4"))
    yield "nan", dict(params), None
    yield "layout", dict(params), {"format": "pt"}


class History:
    def __init__(self, root: Path) -> None:
        self.env = GitEnv(root)
        self.repo = self.env.init_repo(track=("*.safetensors",))
        self.versions = {}
        self.commit("base", BASE, None)
        for tag, params, meta in _kinds():
            self.commit(tag, params, meta)

    def git(self, *args: str, check: bool = True, env=None) -> str:
        return self.env.git(*args, cwd=self.repo, check=check, env=env)

    def run(self, *args: str, env=None):
        return self.env.run(["git", *args], cwd=self.repo, check=False, env=env)

    def commit(self, tag: str, params, meta) -> None:
        write_safetensors(self.repo / MODEL, params, metadata=meta)
        self.versions[tag] = params
        self.git("add", MODEL)
        self.git("commit", "-q", "-m", tag)
        self.git("tag", tag)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    return History(tmp_path_factory.mktemp("textconv-history"))


_HASH = re.compile(r"hash=[0-9a-f]{12}\b")


def hunks(text: str) -> dict[str, str]:
    """`--format=### %s` output -> subject: the hunk lines (no diff/index/---/+++ headers,
    whose blob ids depend on the object encoding), content hashes as `hash=<h>`."""
    out = {}
    for chunk in text.split("### ")[1:]:
        subject, _, body = chunk.partition("\n")
        lines = body.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("@@"))
        out[subject] = "\n".join(_HASH.sub("hash=<h>", line) for line in lines[start:])
    return out


GOLDEN = {
    "modified": """\
@@ -1,7 +1,7 @@
 safetensors checkpoint: 5 parameters, 33 elements, 116 B of tensors
-embed.weight  F32  4x4  l2=2.20085  mean=0.46875  max|x|=0.9375  hash=<h>
+embed.weight  F32  4x4  l2=2.2981  mean=0.53125  max|x|=0.9375  hash=<h>
 head.weight  F32  2x4  l2=2.82843  mean=1  max|x|=1  hash=<h>
 mask  BOOL  4  l2=1.41421  mean=0.5  max|x|=1  hash=<h>
 norm.scale  F16  4  l2=2  mean=1  max|x|=1  hash=<h>
-step  I64  scalar  l2=100  mean=100  max|x|=100  hash=<h>
+step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>
 (file layout: all but the tensors)  hash=<h>""",
    "added": """\
@@ -1,7 +1,8 @@
-safetensors checkpoint: 5 parameters, 33 elements, 116 B of tensors
+safetensors checkpoint: 6 parameters, 36 elements, 128 B of tensors
 embed.weight  F32  4x4  l2=2.2981  mean=0.53125  max|x|=0.9375  hash=<h>
+extra.bias  F32  3  l2=0  mean=0  max|x|=0  hash=<h>
 head.weight  F32  2x4  l2=2.82843  mean=1  max|x|=1  hash=<h>
 mask  BOOL  4  l2=1.41421  mean=0.5  max|x|=1  hash=<h>
 norm.scale  F16  4  l2=2  mean=1  max|x|=1  hash=<h>
 step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>
-(file layout: all but the tensors)  hash=<h>
+(file layout: all but the tensors)  hash=<h>""",
    "removed": """\
@@ -1,8 +1,7 @@
-safetensors checkpoint: 6 parameters, 36 elements, 128 B of tensors
+safetensors checkpoint: 5 parameters, 32 elements, 124 B of tensors
 embed.weight  F32  4x4  l2=2.2981  mean=0.53125  max|x|=0.9375  hash=<h>
 extra.bias  F32  3  l2=0  mean=0  max|x|=0  hash=<h>
 head.weight  F32  2x4  l2=2.82843  mean=1  max|x|=1  hash=<h>
-mask  BOOL  4  l2=1.41421  mean=0.5  max|x|=1  hash=<h>
 norm.scale  F16  4  l2=2  mean=1  max|x|=1  hash=<h>
 step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>
-(file layout: all but the tensors)  hash=<h>
+(file layout: all but the tensors)  hash=<h>""",
    "dtype": """\
@@ -1,7 +1,7 @@
-safetensors checkpoint: 5 parameters, 32 elements, 124 B of tensors
+safetensors checkpoint: 5 parameters, 32 elements, 132 B of tensors
 embed.weight  F32  4x4  l2=2.2981  mean=0.53125  max|x|=0.9375  hash=<h>
 extra.bias  F32  3  l2=0  mean=0  max|x|=0  hash=<h>
 head.weight  F32  2x4  l2=2.82843  mean=1  max|x|=1  hash=<h>
-norm.scale  F16  4  l2=2  mean=1  max|x|=1  hash=<h>
+norm.scale  F32  4  l2=2  mean=1  max|x|=1  hash=<h>
 step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>
-(file layout: all but the tensors)  hash=<h>
+(file layout: all but the tensors)  hash=<h>""",
    "shape": """\
@@ -1,7 +1,7 @@
 safetensors checkpoint: 5 parameters, 32 elements, 132 B of tensors
 embed.weight  F32  4x4  l2=2.2981  mean=0.53125  max|x|=0.9375  hash=<h>
 extra.bias  F32  3  l2=0  mean=0  max|x|=0  hash=<h>
-head.weight  F32  2x4  l2=2.82843  mean=1  max|x|=1  hash=<h>
+head.weight  F32  4x2  l2=2.82843  mean=1  max|x|=1  hash=<h>
 norm.scale  F32  4  l2=2  mean=1  max|x|=1  hash=<h>
 step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>
-(file layout: all but the tensors)  hash=<h>
+(file layout: all but the tensors)  hash=<h>""",
    "nan": """\
@@ -1,7 +1,7 @@
-safetensors checkpoint: 5 parameters, 32 elements, 132 B of tensors
+safetensors checkpoint: 5 parameters, 32 elements, 132 B of tensors; 1 NaN, 1 Inf
 embed.weight  F32  4x4  l2=2.2981  mean=0.53125  max|x|=0.9375  hash=<h>
 extra.bias  F32  3  l2=0  mean=0  max|x|=0  hash=<h>
 head.weight  F32  4x2  l2=2.82843  mean=1  max|x|=1  hash=<h>
-norm.scale  F32  4  l2=2  mean=1  max|x|=1  hash=<h>
+norm.scale  F32  4  l2=nan  mean=nan  max|x|=nan  nan=1  inf=1  hash=<h>
 step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>
 (file layout: all but the tensors)  hash=<h>""",
    # Same tensors, another safetensors __metadata__: only the layout line changes.
    "layout": """\
@@ -4,4 +4,4 @@ extra.bias  F32  3  l2=0  mean=0  max|x|=0  hash=<h>
 head.weight  F32  4x2  l2=2.82843  mean=1  max|x|=1  hash=<h>
 norm.scale  F32  4  l2=nan  mean=nan  max|x|=nan  nan=1  inf=1  hash=<h>
 step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>
-(file layout: all but the tensors)  hash=<h>
+(file layout: all but the tensors)  hash=<h>""",
}


def test_git_log_p_golden_for_each_kind_of_change(history):
    out = history.git("log", "-p", "--reverse", "--format=### %s", "base..layout", "--", MODEL)
    got = hunks(out)
    assert list(got) == list(GOLDEN)
    for kind, golden in GOLDEN.items():
        assert got[kind] == golden, kind
    # git show, without flags, prints the same hunk as log -p.
    assert hunks(history.git("show", "--format=### %s", "modified", "--", MODEL)) == {
        "modified": GOLDEN["modified"]
    }


def _hash12(dtype: str, array: np.ndarray) -> str:
    data = np.ascontiguousarray(array).tobytes()
    return content_hash(RawTensor(dtype, tuple(array.shape), data).data).split(":")[1][:12]


def test_each_line_ends_with_the_parameters_content_hash(history):
    # `git show --textconv REV:PATH` prints the textconv output of one version.
    text = history.git("show", "--textconv", f"nan:{MODEL}")
    lines = text.splitlines()[1:-1]
    params = history.versions["nan"]
    assert [line.split("  ", 1)[0] for line in lines] == sorted(params)
    for line in lines:
        name = line.split("  ", 1)[0]
        assert line.endswith(f"  hash={_hash12(*params[name])}"), line


def _textconv_runs(trace: Path) -> int:
    return sum("git-theta textconv" in line for line in trace.read_text().splitlines())


def _filter_runs(trace: Path) -> int:
    return sum("git-theta filter-process" in line for line in trace.read_text().splitlines())


def test_log_p_uses_the_textconv_cache_keyed_by_blob_and_layout(history, tmp_path):
    history.git("update-ref", "-d", NOTES, check=False)
    trace = tmp_path / "trace"
    log = ("log", "-p", "--format=### %s", "base..layout", "--", MODEL)
    first = history.git(*log, env={"GIT_TRACE": str(trace)})
    # Seven commits, eight versions: each textconv'ed once, each smudged once.
    assert _textconv_runs(trace) == 8
    # The cache: a notes ref whose commit message is the command (git's validity check),
    # with one note per metadata blob.
    assert (
        history.git("log", "-1", "--format=%s", NOTES).strip()
        == (INSTALLED_CONFIG["diff.theta.textconv"])
    )
    noted = {line.split()[1] for line in history.git("notes", "--ref", NOTES, "list").splitlines()}
    tags = ["base", *GOLDEN]
    assert noted == {history.git("rev-parse", f"{tag}:{MODEL}").strip() for tag in tags}
    trace.unlink()
    again = history.git(*log, env={"GIT_TRACE": str(trace)})
    assert again == first
    assert (_textconv_runs(trace), _filter_runs(trace)) == (0, 0)
    # A command naming another layout (an older or newer git-theta's install) gets a cache
    # of its own; this git-theta refuses to fill it, and the cache above stays as it was.
    notes_before = history.git("rev-parse", NOTES)
    other = f"git-theta textconv --layout {LAYOUT + 1}"
    proc = history.run("-c", f"diff.theta.textconv={other}", "show", "modified", "--", MODEL)
    assert proc.returncode == 128
    assert proc.stderr.decode().splitlines()[0] == (
        f"git-theta: error: diff.theta.textconv was installed for text layout {LAYOUT + 1}, "
        f"this git-theta writes layout {LAYOUT} (git would mix them in its textconv cache); "
        "run `git theta install`"
    )
    assert history.git("rev-parse", NOTES) == notes_before
    trace.unlink()
    assert history.git(*log, env={"GIT_TRACE": str(trace)}) == first
    assert _textconv_runs(trace) == 0


def test_a_version_that_is_not_a_checkpoint_reads_as_one_line(history):
    repo = history.env.init_repo("not-a-checkpoint")
    (repo / ".gitattributes").write_text("*.bin diff=theta\n")
    for text in ("first\n", "second, longer\n"):
        (repo / "data.bin").write_text(text)
        history.env.git("add", "-A", cwd=repo)
        history.env.git("commit", "-q", "-m", text, cwd=repo)
    shown = history.env.git("show", "--format=", "HEAD", "--", "data.bin", cwd=repo)
    changed = [line for line in shown.splitlines() if line[:1] in "+-" and line[1:2] != line[:1]]
    old, new = (_HASH.sub("hash=<h>", line) for line in changed)
    prefix = "(git-theta cannot read this version: data.bin: not a checkpoint format"
    assert old.startswith("-" + prefix) and old.endswith(")  size=6  hash=<h>")
    assert new.startswith("+" + prefix) and new.endswith(")  size=15  hash=<h>")


def test_the_work_tree_version_is_read_in_place(history):
    # `git diff --no-ext-diff` takes the textconv path too; git passes the work tree file.
    path = history.repo / MODEL
    saved = path.read_bytes()
    params = dict(history.versions["layout"])
    params["step"] = ("I64", np.array(250, "<i8"))
    write_safetensors(path, params, metadata={"format": "pt"})
    try:
        diff = history.git("diff", "--no-ext-diff", "--", MODEL)
    finally:
        path.write_bytes(saved)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[1:2] != line[:1]]
    assert [_HASH.sub("hash=<h>", line) for line in changed] == [
        "-step  I64  scalar  l2=101  mean=101  max|x|=101  hash=<h>",
        "+step  I64  scalar  l2=250  mean=250  max|x|=250  hash=<h>",
    ]


def test_cached_versions_show_without_their_objects(history, tmp_path):
    log = ("log", "-p", "--format=### %s", "base..layout", "--", MODEL)
    first = history.git(*log)
    objects = history.repo / ".git" / "theta" / "objects"
    aside = tmp_path / "objects"
    shutil.move(objects, aside)
    try:
        assert history.git(*log) == first
        # Uncached, git must smudge the version first, and the smudge filter needs the
        # objects: git stops, with the filter's message naming the file.
        history.git("update-ref", "-d", NOTES)
        proc = history.run("show", "modified", "--", MODEL)
        assert proc.returncode == 128
        assert "model.safetensors" in proc.stderr.decode()
    finally:
        shutil.move(aside, objects)
    assert history.git(*log) == first
