"""install, uninstall, track and untrack through the real `git-theta` command."""

from __future__ import annotations

from git_theta.git.config import INSTALLED_CONFIG
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
    assert {k: installed[k] for k in INSTALLED_CONFIG} == INSTALLED_CONFIG
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
    assert config(env, "local", repo)["filter.theta.process"] == "git-theta filter-process"


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
