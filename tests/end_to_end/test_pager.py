"""`git show` / `git log -p` through the pager `git theta install` sets: checkpoint blocks
become the per-parameter table `git theta diff` prints; everything else passes through."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pexpect
import pytest

from git_theta.git.config import PAGER_CONFIG
from testing.gitenv import GitEnv, store_objects

TIMEOUT = 60
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def table(scratch, old: str, new: str) -> list[str]:
    """What `git theta diff OLD NEW` prints for model.safetensors, without its header line."""
    out = scratch.env.theta("diff", old, new, cwd=scratch.repo).stdout.decode()
    return out.splitlines()[1:]


def at_terminal(scratch, *args: str, env: dict[str, str] | None = None) -> str:
    """`git ARGS` in a pseudo-terminal (so git runs its pager); what the terminal got."""
    child = pexpect.spawn(
        "git",
        list(args),
        cwd=str(scratch.repo),
        env={**scratch.env.env, "TERM": "dumb", "LESS": "FRX", **(env or {})},
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(500, 250),
    )
    child.logfile_read = sys.stdout
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    return _ANSI.sub("", child.before.replace("\r\n", "\n"))


def piped(scratch, *args: str) -> tuple[bytes, bytes]:
    """`git ARGS` piped (no pager), and the same output through `git theta pager`."""
    raw = subprocess.run(
        ["git", *args], cwd=scratch.repo, env=scratch.env.env, capture_output=True, check=True
    ).stdout
    shown = scratch.env.run(["git-theta", "pager"], cwd=scratch.repo, input=raw).stdout
    return raw, shown


def segments(text: str) -> list[tuple[str, str]]:
    """Output cut before each `commit` and `diff --git` line: (that line uncolored, segment)."""
    cuts = [
        m.start()
        for m in re.finditer(r"^(?:\x1b\[[0-9;]*m)*(?:commit |diff --git )", text, re.MULTILINE)
    ]
    return [
        (_ANSI.sub("", text[a:b].split("\n", 1)[0]), text[a:b])
        for a, b in zip(cuts, [*cuts[1:], len(text)], strict=True)
    ]


@pytest.fixture
def history(scratch):
    scratch.commit("v1")
    scratch.commit("v2", scratch.edited("norm.scale"))
    (scratch.repo / "notes.txt").write_text("not a checkpoint\n")
    scratch.git("add", "notes.txt")
    scratch.git("commit", "-q", "-m", "notes")
    scratch.commit("v3", scratch.edited("layers.0.attn.weight", delta=0.5))
    return scratch


def test_git_show_at_a_terminal_prints_the_per_parameter_table(history):
    history.git("config", "core.pager", "cat")
    shown = at_terminal(history, "show", "HEAD")
    expected = table(history, "HEAD^", "HEAD")
    assert expected[0].startswith("model.safetensors: 1 modified, 6 unchanged")
    assert "\n".join(expected) in shown
    assert "l2=" not in shown  # the textconv lines were replaced, not added to
    assert "diff --git a/model.safetensors b/model.safetensors" in shown


def test_git_log_p_hands_the_tables_to_the_users_own_pager(history):
    history.git("config", "core.pager", "sed 's/^/P: /'")
    shown = at_terminal(history, "log", "-p")
    for commit in ("HEAD", "HEAD~2"):
        for line in table(history, f"{commit}^", commit):
            assert f"P: {line}\n" in shown
    assert "P: +not a checkpoint" in shown  # other files keep git's own patch
    assert "P: model.safetensors: 7 added (0 -> 7 params; file added" in shown
    assert "l2=" not in shown


def test_without_the_pager_git_show_keeps_the_textconv_text(history):
    history.git("config", "core.pager", "cat")
    history.git("config", "--global", "--unset", "pager.show")
    shown = at_terminal(history, "show", "HEAD")
    assert "l2=" in shown and "rel.change" not in shown


def test_piped_log_through_the_pager_replaces_only_checkpoint_blocks(history):
    raw, shown = piped(history, "log", "-p", "--color=always")
    raw_text, text = raw.decode(), shown.decode()
    assert "l2=" in raw_text and "l2=" not in text
    # Everything outside the checkpoint blocks is byte for byte what git printed.
    before, after = segments(raw_text), segments(text)
    assert [k for k, _ in before] == [k for k, _ in after]
    ours = "diff --git a/model.safetensors b/model.safetensors"
    assert sum(k == ours for k, _ in before) == 3
    for (key, old), (_, new) in zip(before, after, strict=True):
        assert (old == new) == (key != ours), key
    plain = _ANSI.sub("", text)
    assert "\n".join(table(history, "HEAD^", "HEAD")) in plain
    assert "\x1b[36mmodel.safetensors: 1 modified" in text  # colored like a hunk header


def test_output_it_cannot_parse_passes_through_unchanged(history):
    for args in (
        ("log", "-p", "--word-diff"),
        ("log", "-p", "--graph"),
        ("log", "--stat", "--oneline"),
        ("log", "-p", "--", "notes.txt"),
        ("show", "--no-textconv", "HEAD", "--", "notes.txt"),
    ):
        raw, shown = piped(history, *args)
        assert shown == raw, args


def test_update_types_show_and_metadata_hunks_become_tables_too(history):
    edited = history.edited("layers.0.attn.weight", delta=0.0)
    dtype, array = edited["layers.0.attn.weight"]
    array = array.copy()
    array[3, 4] += 1.0
    edited["layers.0.attn.weight"] = (dtype, array)
    history.write(edited)
    history.env.theta("add", "model.safetensors", "--update-type", "sparse", cwd=history.repo)
    history.git("commit", "-q", "-m", "one entry")
    expected = table(history, "HEAD^", "HEAD")
    # One entry of 1024 changed, stored as a sparse update of the previous version.
    assert "dense->sparse" in expected[2] and expected[2].endswith("  0.09766%")
    _, shown = piped(history, "show", "--no-textconv", "HEAD")
    assert "\n".join(expected) in shown.decode()  # --no-textconv: git's hunk is our JSON
    assert '"oid"' not in shown.decode()


def test_objects_not_fetched_keep_gits_text_and_say_so(history):
    head = history.git("cat-file", "-p", "HEAD:model.safetensors")
    store = history.repo / ".git" / "theta" / "objects"
    oid = re.search(r'"oid":\s*"([0-9a-f]{64})"', head.split("layers.0.attn.weight")[1])[1]
    assert oid in store_objects(history.repo)
    (store / oid[:2] / oid[2:4] / oid).unlink()
    # git's own textconv would need the object too; its cache or --no-textconv do not.
    raw, shown = piped(history, "show", "--no-textconv", "HEAD")
    text = shown.decode()
    assert text.startswith(raw.decode())
    assert text[len(raw) :].startswith("(git-theta: 1 tensor object(s) of model.safetensors are")
    assert "git theta fetch" in text


def test_install_keeps_a_pager_the_user_set_and_uninstall_removes_only_ours(tmp_path):
    env = GitEnv(tmp_path, install=False)
    env.git("config", "--global", "pager.log", "false", cwd=tmp_path)
    out = env.theta("install", cwd=tmp_path).stdout.decode()
    assert "pager.log is already set (false)" in out

    def get(key: str) -> str:
        return env.git("config", "--global", "--get", key, cwd=tmp_path, check=False)

    assert get("pager.show").strip() == PAGER_CONFIG["pager.show"]
    assert get("pager.log").strip() == "false"
    env.theta("install", "--no-pager", cwd=tmp_path)
    assert get("pager.show") == ""
    env.theta("install", cwd=tmp_path)
    env.theta("uninstall", cwd=tmp_path)
    assert get("pager.show") == "" and get("pager.log").strip() == "false"


@pytest.mark.skipif(shutil.which("less") is None, reason="less is not installed")
def test_quitting_less_early_ends_quietly(history):
    child = pexpect.spawn(
        "git",
        ["log", "-p"],
        cwd=str(history.repo),
        env={**history.env.env, "TERM": "xterm", "LESS": "R", "PAGER": "less"},
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(24, 200),
    )
    child.expect("model.safetensors: 1 modified")
    child.send("q")
    child.expect(pexpect.EOF)
    child.close()
    assert "Traceback" not in (child.before or "")
