"""The tools `bench_peers.py` compares, each as the shell commands a user would type: git-theta
(smudge path, and the direct checkout path when the installed git-theta has
`theta.directCheckoutBytes`), Git LFS (the system `git-lfs`) and DVC (`dvc add` / `dvc checkout`
in a Git repository with a local cache, from a virtualenv of its own).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import CommandFailed, Sandbox, log
from tree_rss import DEFAULT_INTERVAL, TreeRun, run_tree

DIRECT_KEY = "theta.directCheckoutBytes"
# The setting's documented "off" (checkpoints of at least this many bytes go direct).
NEVER_DIRECT = "0"
# Where git-theta appends which path wrote each checkpoint (when it has the direct path).
TRACE_ENV = "GIT_THETA_CHECKOUT_TRACE"


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    kind: str  # "theta", "lfs" or "dvc"
    config: tuple[tuple[str, str], ...] = ()  # local git config set after `git init`
    dvc: str = ""  # path of the dvc executable (DVC only)

    def setup(self, sandbox: Sandbox, repo: Path, patterns: Sequence[str]) -> None:
        """A fresh repository tracking `patterns` with this tool, with one commit."""
        run = sandbox.run
        run(["git", "init", "-q", str(repo)], cwd=sandbox.root)
        for key, value in self.config:
            run(["git", "config", key, value], cwd=repo)
        if self.kind == "theta":
            for pattern in patterns:
                run(["git", "theta", "track", pattern], cwd=repo)
            run(["git", "add", ".gitattributes"], cwd=repo)
        elif self.kind == "lfs":
            run(["git", "lfs", "install", "--local"], cwd=repo)
            for pattern in patterns:
                run(["git", "lfs", "track", pattern], cwd=repo)
            run(["git", "add", ".gitattributes"], cwd=repo)
        else:
            run([self.dvc, "init", "-q"], cwd=repo)
            run([self.dvc, "config", "core.analytics", "false"], cwd=repo)
            run(["git", "add", ".dvc", ".dvcignore"], cwd=repo)
        run(["git", "commit", "-q", "-m", "track checkpoints"], cwd=repo)

    def add_commit(self, paths: Sequence[str], message: str) -> str:
        """The shell script that adds `paths` and commits them."""
        commit = shlex.join(["git", "commit", "-q", "-m", message])
        if self.kind != "dvc":
            return f"{shlex.join(['git', 'add', '--', *paths])} && {commit}"
        stubs = [f"{p}.dvc" for p in paths]
        return (
            f"{shlex.join([self.dvc, 'add', '-q', *paths])} && "
            f"{shlex.join(['git', 'add', '--', *stubs, '.gitignore'])} && {commit}"
        )

    def checkout(self, rev: str) -> str:
        script = shlex.join(["git", "checkout", "-q", rev])
        return f"{script} && {shlex.join([self.dvc, 'checkout', '-q'])}" if self.dvc else script

    def status(self) -> str:
        """What tells the user whether the work tree changed: `git status`, or `dvc status`
        for DVC (Git ignores DVC's files, so `git status` never reads them)."""
        if self.kind == "dvc":
            return shlex.join([self.dvc, "status", "-q"])
        return "git status --porcelain"


def theta_peers(direct: bool) -> list[Peer]:
    """git-theta on the smudge path, and on the direct path when the setting exists."""
    if not direct:
        return [Peer("theta", "git-theta", "theta")]
    return [
        Peer("theta", "git-theta (smudge)", "theta", ((DIRECT_KEY, NEVER_DIRECT),)),
        Peer("direct", "git-theta (direct)", "theta", ((DIRECT_KEY, "1"),)),
    ]


def has_direct_checkout(sandbox: Sandbox) -> bool:
    """Whether the git-theta that git will run (this interpreter, the sandbox's PYTHONPATH)
    knows the direct checkout setting."""
    probe = (
        "from git_theta import settings; "
        f"print(any(getattr(s, 'name', None) == {DIRECT_KEY!r} for s in settings.ALL))"
    )
    out = sandbox.run([sys.executable, "-c", probe], cwd=sandbox.root)
    return out.strip() == "True"


def ensure_dvc(venv: Path, spec: str) -> Path:
    """The dvc executable of `venv`, creating the virtualenv and `pip install spec` first if
    it has none."""
    dvc = venv / "bin" / "dvc"
    if not dvc.exists():
        log(f"installing {spec} into {venv} ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", spec], check=True)
    return dvc


def timed_tree(
    sandbox: Sandbox,
    script: str,
    *,
    cwd: Path,
    interval: float = DEFAULT_INTERVAL,
    env: Mapping[str, str] | None = None,
) -> TreeRun:
    """Run `script` under `sh`, after `sync` so earlier writes are not flushed on the clock;
    raise CommandFailed if it fails."""
    subprocess.run(["sync"], check=True)
    full_env = {**sandbox.env, **(env or {})}
    res = run_tree(["sh", "-c", script], cwd=cwd, env=full_env, interval=interval)
    if res.returncode != 0:
        raise CommandFailed(
            f"`{script}` (in {cwd}) exited with {res.returncode}\n"
            f"stdout: {res.stdout.strip()}\nstderr: {res.stderr.strip()}"
        )
    return res
