"""Every git subprocess git-theta runs goes through here, with cwd and errors handled once."""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from git_theta.errors import GitError, GitThetaError, RevisionError
from git_theta.git.catfile import CatFile

__all__ = ["RawChange", "Repo", "run_git"]


class RawChange(NamedTuple):
    """One path of `git diff --raw`: modes, blob ids (None when git did not hash that side or
    the side is absent) and the status letter (A, D, M, T, U)."""

    old_mode: str
    new_mode: str
    old_oid: str | None
    new_oid: str | None
    status: str
    path: str


def run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git ARGS`; raise GitError (command, exit code, stderr) when it fails and `check`.
    `env` adds to (or overrides) this process's environment, e.g. a GIT_INDEX_FILE."""
    cmd = ["git", *args]
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, input=input, capture_output=True, check=False, env=full_env
        )
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
            [
                "rev-parse",
                "--show-object-format",
                "--show-toplevel",
                "--git-common-dir",
                "--git-dir",
            ],
            cwd=self.cwd,
            check=False,
        )
        if proc.returncode != 0:
            raise GitThetaError(
                f"{self.cwd} is not inside a git repository (run `git init` or cd into one)"
            )
        lines = proc.stdout.decode("utf-8").splitlines()
        if len(lines) == 3:  # a bare repository has no top level
            lines.insert(1, "")
        object_format, top, common, gitdir = lines
        self.object_format = object_format  # "sha1" or "sha256"
        self.toplevel = Path(top) if top else None
        self.common_dir = (self.cwd / common).resolve()
        self.git_dir = (self.cwd / gitdir).resolve()

    @property
    def worktree(self) -> Path:
        if self.toplevel is None:
            raise GitThetaError(f"{self.common_dir} is a bare repository; run this in a work tree")
        return self.toplevel

    def git(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> bytes:
        """Output of `git ARGS` run at the work tree root (or the git dir when bare)."""
        where = self.toplevel or self.git_dir
        return run_git(args, cwd=where, input=input, check=check, env=env).stdout

    @cached_property
    def _catfile(self) -> CatFile:
        return CatFile(self.toplevel or self.git_dir)

    def read_blob(self, spec: str) -> bytes | None:
        """The blob named by `spec` (`:path`, `HEAD:path`, an oid), or None if it does not exist."""
        return self._catfile.read_blob(spec)

    def read_current_blob(self, spec: str) -> bytes | None:
        """Like read_blob, but resolves `spec` (`:path`, `HEAD:path`) against the index and HEAD
        as they are now. The persistent cat-file process keeps the index it first read, and a
        filter process lives through a whole rebase or stash, whose steps change both."""
        proc = run_git(
            ["rev-parse", "-q", "--verify", spec], cwd=self.toplevel or self.git_dir, check=False
        )
        if proc.returncode != 0:
            return None
        return self._catfile.read_blob(proc.stdout.decode("ascii").strip())

    def config_get(self, key: str) -> str | None:
        proc = run_git(["config", "--get", key], cwd=self.toplevel or self.git_dir, check=False)
        return proc.stdout.decode("utf-8").strip() if proc.returncode == 0 else None

    def config_section(self, section: str) -> dict[str, str]:
        """Every `section.*` config value, keys lowercased as git reports them (last wins)."""
        proc = run_git(
            ["config", "-z", "--get-regexp", rf"^{section}\."],
            cwd=self.toplevel or self.git_dir,
            check=False,
        )
        out: dict[str, str] = {}
        for item in proc.stdout.decode("utf-8").split("\0"):
            if item:
                key, _, value = item.partition("\n")
                out[key] = value
        return out

    def check_attr(self, attribute: str, path: str) -> str | None:
        """The value of a gitattribute for `path`; None when unspecified or unset."""
        out = self.git("check-attr", "-z", attribute, "--", path)
        fields = out.split(b"\0")
        value = fields[2].decode("utf-8") if len(fields) >= 3 else "unspecified"
        return None if value in ("unspecified", "unset") else value

    # ---- comparing revisions (`git theta diff`, `git theta check`) --------------------------

    def _user_git(self, *args: str, input: bytes | None = None) -> bytes:
        """`git ARGS` where the revisions and pathspecs come from the user: a failure is
        RevisionError carrying git's own message (`bad revision 'nope'`)."""
        proc = run_git(args, cwd=self.toplevel or self.git_dir, input=input, check=False)
        if proc.returncode != 0:
            raise RevisionError(
                ["git", *args], proc.returncode, proc.stderr.decode("utf-8", "replace")
            )
        return proc.stdout

    def commit_log(self, *args: str) -> bytes:
        """`git log ARGS`, with revisions and pathspecs from the user (RevisionError carries
        git's own message)."""
        return self._user_git("log", *args)

    def raw_diff(
        self,
        old: str | None,
        new: str | None,
        pathspecs: Sequence[str] = (),
        *,
        cached: bool = False,
    ) -> list[RawChange]:
        """The paths that differ between two endpoints, with their blob ids (`--raw` format).

        `old` is a revision, or None for the index; `new` is a revision, or None for the work
        tree (the index when `cached`). Plumbing only: nothing is re-hashed or cleaned, so a
        work tree file whose stat data changed is listed with new_oid None and the caller
        decides from its content. Renames are not detected.
        Spec: https://git-scm.com/docs/git-diff-tree#_raw_output_format

        Raises:
            RevisionError: a revision does not exist (git's own message).
        """
        if old is not None and new is not None:
            args = ["diff-tree", "-r", old, new]
        elif old is not None:
            args = ["diff-index", *(["--cached"] if cached else []), old]
        elif new is None and not cached:
            args = ["diff-files"]
        else:
            raise ValueError("raw_diff compares a revision or the index with something newer")
        out = self._user_git(*args[:1], "-z", "--no-renames", *args[1:], "--", *pathspecs)
        fields = out.split(b"\0")
        changes = []
        for info, path in zip(fields[0::2], fields[1::2], strict=False):
            if not info.startswith(b":"):
                continue
            old_mode, new_mode, old_oid, new_oid, status = info[1:].decode().split(" ")
            changes.append(
                RawChange(
                    old_mode,
                    new_mode,
                    None if not old_oid.strip("0") else old_oid,
                    None if not new_oid.strip("0") else new_oid,
                    status[:1],
                    path.decode("utf-8", "surrogateescape"),
                )
            )
        return changes

    def read_blobs(self, oids: Sequence[str]) -> dict[str, bytes]:
        """Many blobs by id from one `git cat-file --batch` run (no GitPython import, one
        process however many blobs); ids that are not blobs are left out."""
        wanted = list(dict.fromkeys(oids))
        if not wanted:
            return {}
        out = self.git("cat-file", "--batch", input="".join(f"{o}\n" for o in wanted).encode())
        found: dict[str, bytes] = {}
        pos = 0
        for oid in wanted:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) != 3:  # `<oid> missing` or `<oid> ambiguous`
                continue
            size = int(header[2])
            if header[1] == b"blob":
                found[oid] = out[pos : pos + size]
            pos += size + 1  # the content, then a newline
        return found

    def merge_base(self, a: str, b: str) -> str:
        """The best common ancestor of two revisions, as `git diff A...B` uses it."""
        proc = run_git(["merge-base", a, b], cwd=self.toplevel or self.git_dir, check=False)
        if proc.returncode == 1 and not proc.stderr.strip():
            raise RevisionError(
                ["git", "merge-base", a, b], 1, f"fatal: {a} and {b} have no common ancestor"
            )
        if proc.returncode != 0:
            raise RevisionError(
                ["git", "merge-base", a, b], proc.returncode, proc.stderr.decode("utf-8", "replace")
            )
        return proc.stdout.decode().strip()

    def has_commit(self, rev: str) -> bool:
        """Whether `rev` names a commit (False for the HEAD of a repository with no commits)."""
        proc = run_git(
            ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            cwd=self.toplevel or self.git_dir,
            check=False,
        )
        return proc.returncode == 0

    def empty_tree(self) -> str:
        """The id of the empty tree in this repository's hash (to compare against before a
        first commit)."""
        return self.git("hash-object", "-t", "tree", "--stdin", input=b"").decode().strip()

    def check_attrs(
        self, attributes: Sequence[str], paths: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        """path -> attribute -> value for many paths in one `git check-attr` run; attributes
        that are unspecified or unset are left out."""
        if not paths:
            return {}
        stdin = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
        out = self.git("check-attr", "-z", "--stdin", *attributes, input=stdin)
        fields = out.split(b"\0")
        found: dict[str, dict[str, str]] = {p: {} for p in paths}
        for path, attr, value in zip(fields[0::3], fields[1::3], fields[2::3], strict=False):
            text = value.decode("utf-8")
            if text not in ("unspecified", "unset"):
                found.setdefault(path.decode("utf-8", "surrogateescape"), {})[attr.decode()] = text
        return found

    def plain_diff(
        self, revisions: Sequence[str], pathspecs: Sequence[str], *, cached: bool = False
    ) -> bytes:
        """Git's own patch for these paths, as `git diff` prints it, without external drivers."""
        return self._user_git(
            "diff",
            "--no-ext-diff",
            "--no-color",
            *(["--cached"] if cached else []),
            *revisions,
            "--",
            *pathspecs,
        )

    def root_pathspecs(self, paths: Sequence[str]) -> list[str]:
        """Pathspecs given relative to `cwd`, made relative to the work tree root where every
        git command here runs (magic pathspecs such as `:(top)x` pass unchanged)."""
        if not paths:
            return []
        prefix = os.path.relpath(self.cwd.resolve(), self.worktree.resolve())
        if prefix == ".":
            return list(paths)
        return [
            p
            if p.startswith(":")
            else posixpath.normpath(posixpath.join(Path(prefix).as_posix(), p))
            for p in paths
        ]

    def close(self) -> None:
        if "_catfile" in self.__dict__:
            self._catfile.close()
