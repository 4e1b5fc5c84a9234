"""Every git subprocess git-theta runs goes through here, with cwd and errors handled once."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from git_theta.errors import GitError, GitThetaError

if TYPE_CHECKING:
    import git as gitpython

__all__ = ["Repo", "run_git"]


def run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git ARGS`; raise GitError (command, exit code, stderr) when it fails and `check`."""
    cmd = ["git", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise GitThetaError("git is not installed or not on PATH") from None
    if check and proc.returncode != 0:
        raise GitError(cmd, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc


class Repo:
    """A git repository seen from `cwd` (default: the current directory).

    Raises:
        GitThetaError: `cwd` is not inside a git repository.
    """

    def __init__(self, cwd: str | os.PathLike[str] | None = None) -> None:
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        proc = run_git(
            ["rev-parse", "--show-toplevel", "--git-common-dir", "--git-dir"],
            cwd=self.cwd,
            check=False,
        )
        if proc.returncode != 0:
            raise GitThetaError(
                f"{self.cwd} is not inside a git repository (run `git init` or cd into one)"
            )
        lines = proc.stdout.decode("utf-8").splitlines()
        if len(lines) == 2:  # a bare repository has no top level
            lines.insert(0, "")
        top, common, gitdir = lines
        self.toplevel = Path(top) if top else None
        self.common_dir = (self.cwd / common).resolve()
        self.git_dir = (self.cwd / gitdir).resolve()

    @property
    def lfs_dir(self) -> Path:
        """Where Git LFS keeps objects (shared by every worktree of the repository)."""
        return self.common_dir / "lfs"

    @property
    def worktree(self) -> Path:
        if self.toplevel is None:
            raise GitThetaError(f"{self.common_dir} is a bare repository; run this in a work tree")
        return self.toplevel

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        """Output of `git ARGS` run at the work tree root (or the git dir when bare)."""
        where = self.toplevel or self.git_dir
        return run_git(args, cwd=where, input=input, check=check).stdout

    @cached_property
    def _gitpython(self) -> gitpython.Git:
        import git as gitpython

        # Its persistent `cat-file --batch` serves many blob reads from one process.
        return gitpython.Git(str(self.toplevel or self.git_dir))

    def read_blob(self, spec: str) -> bytes | None:
        """The blob named by `spec` (`:path`, `HEAD:path`, an oid), or None if it does not exist."""
        import git as gitpython

        if "\n" in spec:
            proc = run_git(["cat-file", "blob", spec], cwd=self.toplevel, check=False)
            return proc.stdout if proc.returncode == 0 else None
        try:
            _, kind, _, data = self._gitpython.get_object_data(spec)
        except (ValueError, gitpython.exc.GitError):
            return None
        return data if kind == b"blob" or kind == "blob" else None

    def config_get(self, key: str) -> str | None:
        proc = run_git(["config", "--get", key], cwd=self.toplevel or self.git_dir, check=False)
        return proc.stdout.decode("utf-8").strip() if proc.returncode == 0 else None

    def check_attr(self, attribute: str, path: str) -> str | None:
        """The value of a gitattribute for `path`; None when unspecified or unset."""
        out = self.git("check-attr", "-z", attribute, "--", path)
        fields = out.split(b"\0")
        value = fields[2].decode("utf-8") if len(fields) >= 3 else "unspecified"
        return None if value in ("unspecified", "unset") else value

    def close(self) -> None:
        if "_gitpython" in self.__dict__:
            self._gitpython.clear_cache()
