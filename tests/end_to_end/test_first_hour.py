"""A new user's first hour (issue 19): nothing that looks fine while it is silently wrong."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pexpect
import pytest

from git_theta import metadata as md
from testing.checkpoints import random_params, read_safetensors, write_safetensors
from testing.gitenv import GitEnv

TIMEOUT = 60


# ---- 1. track before install ------------------------------------------------------------


def test_track_before_install_refuses_and_names_install(tmp_path):
    env = GitEnv(tmp_path, install=False)
    repo = env.init_repo()
    proc = env.theta("track", "*.safetensors", cwd=repo, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [
        "git-theta: error: git-theta is not installed, so git would commit the raw checkpoint: "
        "run `git theta install` (or `git theta install --local` for this repository) first"
    ]
    assert not (repo / ".gitattributes").exists()
    # After install, tracking works and `git add` stores metadata, not the raw file.
    env.theta("install", cwd=tmp_path)
    env.theta("track", "*.safetensors", cwd=repo)
    write_safetensors(repo / "m.safetensors", random_params({"w": ("F32", (4, 4))}))
    env.git("add", "m.safetensors", cwd=repo)
    staged = env.git("show", ":m.safetensors", cwd=repo).encode()
    assert md.looks_like_metadata(staged[: len(md.MAGIC)])


def test_track_after_a_local_install_works(tmp_path):
    env = GitEnv(tmp_path, install=False)
    repo = env.init_repo()
    env.theta("install", "--local", cwd=repo)
    assert env.theta("track", "*.pt", cwd=repo).stdout.decode() == 'Tracking "*.pt"\n'


# ---- 7. track with no arguments; no renormalize advice in an empty repository ---------------


def test_track_without_patterns_lists_them(gitenv):
    repo = gitenv.init_repo()
    out = gitenv.theta("track", cwd=repo).stdout.decode()
    assert out == 'No patterns are tracked; `git theta track "*.safetensors"` adds one.\n'
    gitenv.theta("track", "*.safetensors", "weights/*.pt", cwd=repo)
    (repo / "sub").mkdir()
    (repo / "sub" / ".gitattributes").write_text(
        "*.bin filter=theta merge=theta diff=theta -text\n"
    )
    assert gitenv.theta("track", cwd=repo).stdout.decode() == (
        "Listing tracked patterns\n"
        "    *.safetensors (.gitattributes)\n"
        "    weights/*.pt (.gitattributes)\n"
        "    sub/*.bin (sub/.gitattributes)\n"
    )


def test_renormalize_advice_only_when_committed_files_are_affected(gitenv):
    repo = gitenv.init_repo()
    out = gitenv.theta("track", "*.safetensors", cwd=repo).stdout.decode()
    assert out == 'Tracking "*.safetensors"\n'  # empty repository: nothing to convert
    np.savez(repo / "old.npz", w=np.zeros(3))
    gitenv.git("add", ".", cwd=repo)
    gitenv.git("commit", "-q", "-m", "raw npz", cwd=repo)
    out = gitenv.theta("track", "*.npz", cwd=repo).stdout.decode()
    assert "`git add --renormalize .` converts them" in out
    out = gitenv.theta("track", "*.pt", cwd=repo).stdout.decode()
    assert out == 'Tracking "*.pt"\n'


# ---- 2. a rules file with keys outside [check] --------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'frozen = ["norm.*"]\n',
            ".git-theta.toml:1: unknown key 'frozen' at the top level; rules go in [check] "
            "(valid keys: frozen, max-relative-change, no-nan, allow-shape-change)",
        ),
        (
            '# rules\n[chek]\nfrozen = ["norm.*"]\n',
            ".git-theta.toml:2: unknown table [chek] at the top level; rules go in [check] "
            "(valid keys: frozen, max-relative-change, no-nan, allow-shape-change)",
        ),
    ],
)
def test_check_refuses_rules_outside_the_check_table(scratch, text, message):
    scratch.commit("v1")
    scratch.write(scratch.edited("norm.scale"))
    scratch.git("add", "model.safetensors")
    (scratch.repo / ".git-theta.toml").write_text(text)
    proc = scratch.env.theta("check", cwd=scratch.repo, check=False)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert proc.stderr.decode() == f"git-theta: error: {message}\n"


def test_check_refuses_a_stray_table_in_pyproject(scratch):
    scratch.commit("v1")
    (scratch.repo / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.git-theta.chek]\nfrozen = ["norm.*"]\n'
    )
    proc = scratch.env.theta("check", cwd=scratch.repo, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith(
        "git-theta: error: pyproject.toml:4: unknown table [tool.git-theta.chek] in "
        "[tool.git-theta]; rules go in [tool.git-theta.check]"
    )


# ---- 4. the pager when git-theta is not on PATH ---------------------------------------------


def _path_without_git_theta() -> str:
    keep = [
        d
        for d in os.environ["PATH"].split(os.pathsep)
        if d and not os.path.exists(os.path.join(d, "git-theta"))
    ]
    assert shutil.which("git", path=os.pathsep.join(keep)), "git must stay reachable"
    return os.pathsep.join(keep)


def test_git_log_at_a_terminal_without_git_theta_on_path(scratch):
    scratch.commit("the base model")
    child = pexpect.spawn(
        "git",
        ["log", "-1"],
        cwd=str(scratch.repo),
        env={**scratch.env.env, "PATH": _path_without_git_theta(), "TERM": "dumb", "PAGER": "cat"},
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    child.logfile_read = sys.stdout
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "the base model" in child.before
    assert "not found" not in child.before


def test_install_upgrades_the_pager_an_earlier_release_set(tmp_path):
    env = GitEnv(tmp_path, install=False)
    env.git("config", "--global", "pager.log", "git-theta pager", cwd=tmp_path)
    env.theta("install", cwd=tmp_path)
    value = env.git("config", "--global", "--get", "pager.log", cwd=tmp_path).strip()
    assert value.startswith("command -v git-theta")
    env.theta("uninstall", cwd=tmp_path)
    assert env.git("config", "--global", "--get", "pager.log", cwd=tmp_path, check=False) == ""


# ---- 5. a .pt's non-tensor values in diffs ----------------------------------------------


def _pt_repo(gitenv):
    torch = pytest.importorskip("torch")
    repo = gitenv.init_repo(track=("*.pt",))
    torch.manual_seed(0)
    state = {"w": torch.randn(4, 4), "step": 100, "config": {"lr": 0.001, "name": "run"}}
    torch.save(state, repo / "ckpt.pt")
    gitenv.git("add", "ckpt.pt", cwd=repo)
    gitenv.git("commit", "-q", "-m", "v1", cwd=repo)
    return torch, repo, state


def test_diff_names_changed_non_tensor_values_of_a_pt(gitenv):
    torch, repo, state = _pt_repo(gitenv)
    torch.save({**state, "step": 200, "config": {"lr": 0.0005, "name": "run"}}, repo / "ckpt.pt")
    out = gitenv.theta("diff", cwd=repo).stdout.decode().splitlines()
    assert out[1] == (
        "ckpt.pt: no parameter changed, 1 unchanged (1 -> 1 params; 2 non-tensor value(s) changed)"
    )
    assert out[2:] == ["  step: 100 -> 200", "  config/lr: 0.001 -> 0.0005"]
    gitenv.git("commit", "-qam", "v2", cwd=repo)
    # With a tensor changed too, and through git's own diff (the external driver).
    torch.save({**state, "w": state["w"] + 1, "step": 300}, repo / "ckpt.pt")
    text = gitenv.git("diff", "--", "ckpt.pt", cwd=repo)
    assert "2 non-tensor value(s) changed" in text
    assert "  step: 200 -> 300\n" in text
    assert "  config/lr: 0.0005 -> 0.001\n" in text
    assert "\n  modified  w " in text


def test_diff_names_changed_safetensors_metadata(scratch):
    scratch.commit("v1")
    write_safetensors(scratch.path, scratch.params, metadata={"format": "np"})
    out = scratch.env.theta("diff", cwd=scratch.repo).stdout.decode().splitlines()
    assert out[1].endswith("(7 -> 7 params; 1 non-tensor value(s) changed)")
    assert out[2] == "  __metadata__/format: 'pt' -> 'np'"


# ---- 3. low rank: no silent rewrite; rank inferred; F64 in float64 -------------------------


def _low_rank_edit(scratch, dtype="F32", rank=2, scale=0.01, noise=0.0, seed=3):
    """Commit a 64x48 weight, then write it back changed by a rank-`rank` product."""
    rng = np.random.default_rng(seed)
    code = {"F32": np.float32, "F64": np.float64}[dtype]
    w = rng.standard_normal((64, 48)).astype(code)
    scratch.commit("v1", {"w": (dtype, w), "b": ("F32", np.zeros(4, np.float32))})
    change = scale * (rng.standard_normal((64, rank)) @ rng.standard_normal((rank, 48)))
    edited = (w + change + noise * rng.standard_normal((64, 48))).astype(code)
    data = scratch.write({"w": (dtype, edited), "b": ("F32", np.zeros(4, np.float32))})
    return data


def test_lossy_rank_is_refused_without_consent_and_nothing_changes(scratch):
    data = _low_rank_edit(scratch, noise=1e-3)
    index_before = scratch.git("ls-files", "-s")
    proc = scratch.env.theta(
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--rank",
        "1",
        cwd=scratch.repo,
        check=False,
    )
    assert proc.returncode == 1
    assert "rank 1 keeps" in proc.stdout.decode()
    assert proc.stderr.decode() == (
        "git-theta: error: model.safetensors: --rank keeps only part of the change of 1 "
        "parameter(s) (w); nothing was staged or rewritten: pass --accept-lossy to store it and "
        "rewrite the file, or leave out --rank to infer a rank that keeps the change\n"
    )
    assert scratch.path.read_bytes() == data
    assert scratch.git("ls-files", "-s") == index_before


def test_lossy_rank_with_consent_keeps_a_copy_of_the_file(scratch):
    data = _low_rank_edit(scratch, noise=1e-3)
    out = scratch.env.theta(
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--rank",
        "1",
        "--accept-lossy",
        cwd=scratch.repo,
    ).stdout.decode()
    backup = scratch.repo / ".git" / "theta" / "backup" / "model.safetensors"
    assert f"the file as it was is kept at {backup}" in out
    assert backup.read_bytes() == data
    assert scratch.path.read_bytes() != data
    assert scratch.git("status", "--porcelain") == "M  model.safetensors\n"


def test_lossy_rank_asks_at_a_terminal(scratch):
    data = _low_rank_edit(scratch, noise=1e-3)
    child = pexpect.spawn(
        "git-theta",
        ["add", "model.safetensors", "--update-type", "low-rank", "--rank", "1"],
        cwd=str(scratch.repo),
        env={**scratch.env.env, "TERM": "dumb"},
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    child.expect(r"rewrite model.safetensors with it \(a copy of the file is kept\)\? \[y/N\]")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert scratch.path.read_bytes() == data


def test_low_rank_without_rank_infers_it_and_keeps_the_file(scratch):
    data = _low_rank_edit(scratch, rank=3)
    out = scratch.env.theta(
        "add", "model.safetensors", "--update-type", "low-rank", cwd=scratch.repo
    ).stdout.decode()
    assert "w: rank 3 (inferred from the singular values) keeps 100.00% of the change" in out
    assert "rewrote" not in out
    assert scratch.path.read_bytes() == data  # the user's file, untouched
    assert scratch.git("status", "--porcelain") == "M  model.safetensors\n"
    scratch.git("commit", "-qm", "low rank")
    entry = md.decode(scratch.git("show", "HEAD:model.safetensors").encode()).params["w"]
    assert entry.updates[-1]["type"] == "low-rank"
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.git("status", "--porcelain") == ""


def test_low_rank_of_an_f64_parameter_is_stored_and_rebuilt_in_float64(scratch):
    _low_rank_edit(scratch, dtype="F64", rank=2)
    scratch.env.theta("add", "model.safetensors", "--update-type", "low-rank", cwd=scratch.repo)
    scratch.git("commit", "-qm", "low rank")
    entry = md.decode(scratch.git("show", "HEAD:model.safetensors").encode()).params["w"]
    from git_theta.metadata import ObjectRef
    from git_theta.store import ObjectStore

    store = ObjectStore(scratch.repo / ".git" / "theta")
    a = store.load_tensor(ObjectRef(entry.updates[-1]["a"]["oid"], entry.updates[-1]["a"]["size"]))
    assert (a.dtype, a.shape) == ("F64", (2, 48))
    written = read_safetensors(scratch.path)["w"][1]
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.git("status", "--porcelain") == ""
    rebuilt = read_safetensors(scratch.path)["w"][1]
    assert rebuilt.dtype == np.float64
    # Computed in float64: within one F64 rounding at the tensor's scale (float32 is 1e-7).
    assert np.max(np.abs(rebuilt - written)) <= 2.0**-52 * np.max(np.abs(written))


# ---- 7. diff --cached; a change from an all-zero tensor ------------------------------------


def test_diff_cached_compares_head_with_the_index(scratch):
    scratch.commit("v1")
    scratch.write(scratch.edited("norm.scale"))
    scratch.git("add", "model.safetensors")
    scratch.write(scratch.edited("norm.scale", "embed.weight"))  # unstaged on top
    (scratch.repo / "notes.txt").write_text("hello\n")
    scratch.git("add", "notes.txt")
    for flag in ("--cached", "--staged"):
        out = scratch.env.theta("diff", flag, cwd=scratch.repo).stdout.decode()
        assert out.splitlines()[1].startswith("model.safetensors: 1 modified, 6 unchanged")
        assert "  modified  norm.scale " in out and "embed.weight" not in out
        assert "+hello" in out  # other staged paths: git's own patch
    both = scratch.env.theta("diff", "--cached", "HEAD", "HEAD", cwd=scratch.repo, check=False)
    assert both.returncode == 1
    assert b"--cached compares one revision with the index, got 2" in both.stderr


def test_relative_change_from_an_all_zero_tensor_says_so(scratch):
    zeros = dict(scratch.params, **{"norm.scale": ("F32", np.zeros(32, np.float32))})
    scratch.commit("zeros", zeros)
    scratch.write(scratch.edited("norm.scale"))
    out = scratch.env.theta("diff", cwd=scratch.repo).stdout.decode()
    row = next(line for line in out.splitlines() if "norm.scale" in line)
    assert "from zero" in row and "inf" not in row


# ---- 8. progress on stderr: at a terminal only ---------------------------------------------


def test_progress_is_quiet_in_a_pipe_and_shown_when_asked(scratch):
    scratch.write()
    quiet = scratch.env.run(["git", "add", "model.safetensors"], cwd=scratch.repo)
    assert quiet.stderr == b""  # stderr is a pipe here, as in CI
    scratch.git("commit", "-qm", "v1")
    scratch.write(scratch.edited("embed.weight"))
    shown = scratch.env.run(
        ["git", "add", "model.safetensors"], cwd=scratch.repo, env={"GIT_THETA_PROGRESS": "1"}
    )
    assert "git-theta: cleaning model.safetensors" in shown.stderr.decode()
    scratch.git("commit", "-qm", "v2")
    scratch.path.unlink()
    out = scratch.env.run(
        ["git", "checkout", "--", "model.safetensors"],
        cwd=scratch.repo,
        env={"GIT_THETA_PROGRESS": "1"},
    )
    assert "git-theta: writing model.safetensors" in out.stderr.decode()


def test_progress_at_a_terminal(scratch):
    scratch.write()
    child = pexpect.spawn(
        "git",
        ["add", "model.safetensors"],
        cwd=str(scratch.repo),
        # Forced only to skip the one-second delay; the bar goes to the terminal's stderr.
        env={**scratch.env.env, "TERM": "dumb", "GIT_THETA_PROGRESS": "1"},
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    child.expect("git-theta: cleaning model.safetensors")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
