"""`git theta check`: exit codes and messages for each rule, rules files, the pre-commit hook."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import git_theta
from git_theta import metadata as md
from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv

MODEL = "model.safetensors"
SOURCE = Path(git_theta.__file__).resolve().parent.parent

BASE = {
    "embed.weight": ("F32", np.linspace(-1, 1, 64, dtype="<f4").reshape(8, 8)),
    "head.weight": ("F32", np.full((4, 8), 0.5, "<f4")),
    "norm.scale": ("F32", np.ones(8, "<f4")),
    "bias": ("F32", np.zeros(8, "<f4")),
}


def variant(**changes):
    params = dict(BASE)
    params.update({name: ("F32", np.asarray(value, "<f4")) for name, value in changes.items()})
    return params


def _with_nan():
    values = np.ones(8, "<f4")
    values[[1, 5]] = np.nan
    values[2] = np.inf
    return values


# One commit breaks every rule once: embed moves 1% (frozen), head doubles (relative change
# 1), norm gets NaN and Inf, bias changes shape.
V1 = variant(
    **{
        "embed.weight": BASE["embed.weight"][1] * 1.01,
        "head.weight": BASE["head.weight"][1] * 2,
        "norm.scale": _with_nan(),
        "bias": np.zeros((2, 4)),
    }
)


class Repo:
    def __init__(self, root: Path) -> None:
        self.env = GitEnv(root)
        self.path = self.env.init_repo("repo", track=("*.safetensors",))
        self.commit("base", BASE)
        self.commit("v1", V1)
        self.git("checkout", "-q", "base")

    def git(self, *args: str) -> str:
        return self.env.git(*args, cwd=self.path)

    def commit(self, tag: str, params) -> None:
        write_safetensors(self.path / MODEL, params)
        self.git("add", MODEL)
        self.git("commit", "-q", "-m", tag)
        self.git("tag", tag)

    def check(self, *args: str) -> tuple[int, str, str]:
        proc = self.env.theta("check", *args, cwd=self.path, check=False)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    return Repo(tmp_path_factory.mktemp("check"))


SCOPE = "4 changed parameter(s) in 1 checkpoint(s), base -> v1"
ALLOW = "--allow-shape-change"


def test_frozen(repo):
    assert repo.check("base..v1", "--frozen", "embed.*", ALLOW) == (
        1,
        "model.safetensors: embed.weight: frozen: modified (frozen by 'embed.*')\n"
        f"git-theta check: 1 violation(s); {SCOPE}\n",
        "",
    )
    assert repo.check("base..v1", "--frozen", "missing.*", "--frozen", "x", ALLOW) == (
        0,
        f"git-theta check: all rules hold; {SCOPE}\n",
        "",
    )


def test_max_relative_change(repo):
    code, out, _ = repo.check("base...v1", "--max-relative-change", "0.5", ALLOW)
    assert code == 1
    assert out.splitlines() == [
        "model.safetensors: norm.scale: max-relative-change: nan (the change is undefined) > 0.5",
        "model.safetensors: head.weight: max-relative-change: 1 > 0.5",
        "git-theta check: 2 violation(s); 4 changed parameter(s) in 1 checkpoint(s), "
        "base...v1 (merge base) -> v1",
    ]
    assert repo.check("base..v1", "--max-relative-change", "1", "--frozen", "norm.*", ALLOW) == (
        1,
        "model.safetensors: norm.scale: frozen: modified (frozen by 'norm.*')\n"
        "model.safetensors: norm.scale: max-relative-change: nan (the change is undefined) > 1\n"
        f"git-theta check: 2 violation(s); {SCOPE}\n",
        "",
    )


def test_no_nan(repo):
    code, out, _ = repo.check("base..v1", "--no-nan", ALLOW)
    assert (code, out.splitlines()[0]) == (1, "model.safetensors: norm.scale: no-nan: 2 NaN, 1 Inf")


def test_shape_change_is_refused_unless_allowed(repo):
    code, out, _ = repo.check("base..v1")
    assert code == 1
    assert out.splitlines()[0] == "model.safetensors: bias: shape-change: [8] -> [2, 4]"
    assert repo.check("base..v1", ALLOW)[0] == 0


def test_rules_file_and_its_errors(repo):
    rules = repo.path / ".git-theta.toml"
    try:
        rules.write_text('[check]\nfrozen = ["head.*"]\nallow-shape-change = true\n')
        code, out, _ = repo.check("base..v1", "--max-relative-change", "0.5")
        assert code == 1
        assert out.splitlines()[:3] == [
            "model.safetensors: norm.scale: max-relative-change: nan (the change is undefined) > 0.5",
            "model.safetensors: head.weight: frozen: modified (frozen by 'head.*')",
            "model.safetensors: head.weight: max-relative-change: 1 > 0.5",
        ]
        rules.write_text("[check]\n\nno-nan = yes\n")
        assert repo.check("base..v1") == (
            1,
            "",
            "git-theta: error: .git-theta.toml:3: invalid TOML: Invalid value (column 10)\n",
        )
    finally:
        rules.unlink()


def test_rules_in_pyproject_and_which_file_wins(repo):
    pyproject = repo.path / "pyproject.toml"
    rules = repo.path / ".git-theta.toml"
    try:
        pyproject.write_text(
            '[project]\nname = "demo"\n\n[tool.git-theta.check]\n'
            'frozen = ["head.*"]\nallow-shape-change = true\n'
        )
        assert repo.check("base..v1") == (
            1,
            "model.safetensors: head.weight: frozen: modified (frozen by 'head.*')\n"
            f"git-theta check: 1 violation(s); {SCOPE}\n",
            "",
        )
        # A .git-theta.toml is read instead of pyproject.toml, even without a [check] table.
        rules.write_text("# no rules here\n")
        assert repo.check("base..v1", ALLOW)[0] == 0
        rules.unlink()
        pyproject.write_text('[tool.git-theta.check]\nallow-shape-change = true\nno-nan = "yes"\n')
        assert repo.check("base..v1") == (
            1,
            "",
            "git-theta: error: pyproject.toml:3: no-nan must be true or false\n",
        )
        pyproject.write_text("[tool.git-theta.check]\nmax-relative = 0.5\n")
        assert repo.check("base..v1") == (
            1,
            "",
            "git-theta: error: pyproject.toml:2: unknown key 'max-relative' in "
            "[tool.git-theta.check]; valid keys: frozen, max-relative-change, no-nan, "
            "allow-shape-change\n",
        )
    finally:
        pyproject.unlink(missing_ok=True)
        rules.unlink(missing_ok=True)


def test_objects_not_fetched_are_named_only_when_values_are_needed(repo):
    meta = md.decode(repo.git("show", f"v1:{MODEL}").encode())
    oid = meta.params["head.weight"].object.oid
    obj = repo.path / ".git" / "theta" / "objects" / oid[:2] / oid[2:4] / oid
    aside = obj.with_name(oid + ".aside")
    shutil.move(obj, aside)
    try:
        # frozen and shape-change go by metadata alone.
        assert repo.check("base..v1", "--frozen", "head.*", ALLOW) == (
            1,
            "model.safetensors: head.weight: frozen: modified (frozen by 'head.*')\n"
            f"git-theta check: 1 violation(s); {SCOPE}\n",
            "",
        )
        assert repo.check("base..v1", "--max-relative-change", "0.5", ALLOW) == (
            1,
            "",
            "git-theta: error: objects not in the local store for 1 parameter(s): "
            "model.safetensors: head.weight (v1:model.safetensors); "
            "fetch them with `git theta fetch`\n",
        )
    finally:
        shutil.move(aside, obj)
    assert repo.check("base..v1", "--max-relative-change", "0.5", ALLOW)[0] == 1


def test_default_range_is_what_a_commit_would_record(repo):
    write_safetensors(repo.path / MODEL, variant(**{"embed.weight": np.zeros((8, 8))}))
    try:
        assert repo.check("--frozen", "embed.*")[0] == 0  # not staged yet
        repo.git("add", MODEL)
        code, out, _ = repo.check("--frozen", "embed.*")
        assert code == 1
        assert out.splitlines()[-1].endswith("HEAD -> index")
    finally:
        repo.git("reset", "-q", "--hard")


def test_nonexistent_revision(repo):
    assert repo.check("base..nope") == (1, "", "git-theta: error: bad revision 'nope'\n")


def _hook_repo(env: GitEnv, root: Path) -> str:
    """A git repository holding this source tree, as pre-commit clones hook repositories."""
    hooks = root / "hooks"
    hooks.mkdir()
    shutil.copytree(
        SOURCE / "git_theta", hooks / "git_theta", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(SOURCE / "man", hooks / "man")  # the manual page pyproject installs
    for name in ("pyproject.toml", ".pre-commit-hooks.yaml", "README.md"):
        if (SOURCE / name).exists():
            shutil.copy(SOURCE / name, hooks / name)
        else:
            (hooks / name).write_text("git-theta\n")
    env.git("init", "-q", str(hooks), cwd=root)
    env.git("add", "-A", cwd=hooks)
    env.git("commit", "-q", "-m", "hooks", cwd=hooks)
    return env.git("rev-parse", "HEAD", cwd=hooks).strip()


def test_pre_commit_framework_runs_the_hook(tmp_path):
    env = GitEnv(tmp_path)
    rev = _hook_repo(env, tmp_path)
    repo = env.init_repo("target", track=("*.safetensors",))
    (repo / ".pre-commit-config.yaml").write_text(
        "repos:\n"
        f"  - repo: {tmp_path / 'hooks'}\n"
        f"    rev: {rev}\n"
        "    hooks:\n"
        "      - id: git-theta-check\n"
        '        args: [--frozen, "embed.*"]\n'
    )
    write_safetensors(repo / MODEL, BASE)
    env.git("add", "-A", cwd=repo)
    env.git("commit", "-q", "-m", "base", cwd=repo)
    # pre-commit builds the hook's virtualenv with pip; let it see the packages this
    # interpreter already has and install only git-theta itself, offline.
    offline = {
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
        "VIRTUALENV_SYSTEM_SITE_PACKAGES": "1",
        "PIP_NO_INDEX": "1",
        "PIP_NO_DEPS": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_NO_COMPILE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    installed = env.run(["pre-commit", "install"], cwd=repo, env=offline)
    assert b"pre-commit installed" in installed.stdout
    write_safetensors(repo / MODEL, variant(**{"embed.weight": np.zeros((8, 8))}))
    env.git("add", MODEL, cwd=repo)
    blocked = env.run(["git", "commit", "-m", "touch embed"], cwd=repo, env=offline, check=False)
    # git runs commit hooks with their stdout sent to stderr.
    out = blocked.stdout.decode() + blocked.stderr.decode()
    assert blocked.returncode == 1, out
    assert "git-theta check" in out and "Failed" in out
    assert "model.safetensors: embed.weight: frozen: modified (frozen by 'embed.*')" in out
    assert env.git("rev-list", "--count", "HEAD", cwd=repo).strip() == "2"
    write_safetensors(repo / MODEL, variant(**{"head.weight": np.zeros((4, 8))}))
    env.git("add", MODEL, cwd=repo)
    env.run(["git", "commit", "-q", "-m", "touch head"], cwd=repo, env=offline)
    assert env.git("rev-list", "--count", "HEAD", cwd=repo).strip() == "3"
