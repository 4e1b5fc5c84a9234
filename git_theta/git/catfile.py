"""A persistent `git cat-file --batch` process: any number of blob reads, one process.

The filter reads the previous version of every file it cleans through this. GitPython offers
the same, but importing it costs ~0.1 s, paid by every git command that starts our filter.
Spec: https://git-scm.com/docs/git-cat-file#_batch_output
"""

from __future__ import annotations

import os
import subprocess
from typing import IO

from git_theta.errors import GitError

__all__ = ["CatFile"]


class CatFile:
    """Reads objects by name (`:path`, `HEAD:path`, an oid) from the repository at `cwd`."""

    def __init__(self, cwd: str | os.PathLike[str]) -> None:
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                cwd=self._cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def read_blob(self, name: str) -> bytes | None:
        """The blob's content; None if `name` names nothing, or something not a blob."""
        if "\n" in name:  # the batch protocol is line based; such names go one at a time
            proc = subprocess.run(
                ["git", "cat-file", "blob", name], cwd=self._cwd, capture_output=True, check=False
            )
            return proc.stdout if proc.returncode == 0 else None
        stdin, stdout = self._pipes()
        stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
        stdin.flush()
        header = stdout.readline()
        if not header:
            raise GitError(["git", "cat-file", "--batch"], -1, "the process ended unexpectedly")
        if header.endswith((b" missing\n", b" ambiguous\n")):
            return None
        _, kind, size = header.split()
        data = stdout.read(int(size))
        stdout.read(1)  # the newline after the content
        return data if kind == b"blob" else None

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
