"""install, uninstall, track and untrack through the real `git-theta` command."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from git_theta.git.config import INSTALLED_CONFIG, by_path, installed_config
from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import GitEnv


def config(env: GitEnv, scope: str, cwd) -> dict[str, str]:
    out = env.git("config", f"--{scope}", "--list", cwd=cwd, check=False)
    return dict(line.split("=", 1) for line in out.splitlines())


def test_install_and_uninstall_global(tmp_path):
    env = GitEnv(tmp_path, install=False)
    assert (
        env.theta("install", cwd=tmp_path).stdout
        == b"git-theta installed in the global git config.\n"
    )
    installed = config(env, "global", tmp_path)
    assert {k: installed[k] for k in INSTALLED_CONFIG} == installed_config()
    env.theta("install", cwd=tmp_path)  # idempotent
    env.theta("uninstall", cwd=tmp_path)
    assert not any(
        k.startswith(("filter.theta", "merge.theta", "diff.theta"))
        for k in config(env, "global", tmp_path)
    )
    assert "user.name" in config(env, "global", tmp_path)


def test_uninstall_removes_what_an_earlier_release_installed(tmp_path):
    env = GitEnv(tmp_path)
    env.git("config", "--global", "diff.theta.textconv", "git-theta textconv", cwd=tmp_path)
    env.git("config", "--global", "theta.custom", "kept", cwd=tmp_path)
    env.theta("uninstall", cwd=tmp_path)
    left = config(env, "global", tmp_path)
    assert not any(k.startswith("diff.theta") for k in left)
    assert left["theta.custom"] == "kept"


def test_install_local_needs_a_repository(tmp_path):
    env = GitEnv(tmp_path, install=False)
    proc = env.theta("install", "--local", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("git-theta: error: ")
    assert "not inside a git repository" in proc.stderr.decode()
    repo = env.init_repo()
    env.theta("install", "--local", cwd=repo)
    assert (
        config(env, "local", repo)["filter.theta.process"]
        == installed_config()["filter.theta.process"]
    )


def test_the_filter_starts_from_this_installation_by_path():
    """Not through PATH, where a version manager's shim may stand (pyenv's costs ~0.2 s per
    Git command); the script is the one beside this interpreter."""
    script = Path(sys.executable).parent / "git-theta"
    assert script.is_file()
    assert installed_config()["filter.theta.process"].startswith(
        f"test -x {shlex.quote(str(script))} && exec "
    )


def test_a_removed_installation_falls_back_to_git_theta_on_path(tmp_path):
    """The global config may name the script of a virtualenv deleted since: Git must still
    find a git-theta to run."""
    env = GitEnv(tmp_path)
    gone = tmp_path / "deleted-venv" / "bin" / "git-theta"
    gone.parent.mkdir(parents=True)
    shutil.copy(Path(sys.executable).parent / "git-theta", gone)
    env.git(
        "config",
        "--global",
        "filter.theta.process",
        by_path("git-theta filter-process", gone),
        cwd=tmp_path,
    )
    gone.unlink()
    repo = env.init_repo(track=("*.safetensors",))
    data = write_safetensors(repo / "model.safetensors", random_params({"w": ("F32", (8, 8))}))
    env.git("add", "model.safetensors", cwd=repo)
    env.git("commit", "-q", "-m", "model", cwd=repo)
    assert env.git("cat-file", "-p", "HEAD:model.safetensors", cwd=repo).startswith("{")
    (repo / "model.safetensors").unlink()
    env.git("checkout", "--", "model.safetensors", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == data


def test_track_from_a_subdirectory_stages_gitattributes(gitenv):
    repo = gitenv.init_repo()
    (repo / "models").mkdir()
    out = gitenv.theta("track", "*.safetensors", cwd=repo / "models").stdout.decode()
    assert out.startswith('Tracking "models/*.safetensors"')
    assert (repo / ".gitattributes").read_text() == (
        "models/*.safetensors filter=theta merge=theta diff=theta -text\n"
    )
    assert gitenv.git("diff", "--cached", "--name-only", cwd=repo) == ".gitattributes\n"
    again = gitenv.theta("track", "models/*.safetensors", cwd=repo).stdout.decode()
    assert again.startswith('Already tracking "models/*.safetensors"')
    gitenv.theta("untrack", "models/*.safetensors", cwd=repo)
    assert (repo / ".gitattributes").read_text() == ""


def test_unknown_command_is_a_usage_error(gitenv, tmp_path):
    proc = gitenv.theta("frobnicate", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr


def test_git_theta_runs_as_a_git_subcommand(gitenv, tmp_path):
    assert gitenv.git("theta", "--version", cwd=tmp_path).startswith("git-theta, version ")


def test_metadata_added_as_is_stays_as_is(scratch):
    scratch.commit("v1")
    text = scratch.git("show", "HEAD:model.safetensors").encode()
    out = scratch.env.run(["git-theta", "clean", "model.safetensors"], cwd=scratch.repo, input=text)
    assert out.stdout == text
