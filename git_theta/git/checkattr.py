"""A persistent `git check-attr --stdin -z` process: one attribute for any number of paths.

`git check-attr` answers each path on stdin as soon as it reads it, so one process serves
a whole `git log -p` (git_theta/commands/pager.py) instead of one process per path.
Spec: https://git-scm.com/docs/git-check-attr#_output
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from git_theta.errors import GitError

__all__ = ["CheckAttr", "attributes_of"]

# check-attr's words for "no value"; anything else is a value (`filter=lfs` -> "lfs").
_NO_VALUE = ("unspecified", "unset", "set")


def attributes_of(
    cwd: str | os.PathLike[str], paths: Sequence[str], names: Sequence[str]
) -> dict[str, dict[str, str | None]]:
    """`{path: {attribute: value}}` for `paths` relative to `cwd`, in one `git check-attr`.

    A value is None when the attribute is unspecified, unset or merely set (no driver name).
    """
    if not paths:
        return {}
    data = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
    cmd = ["git", "check-attr", "-z", "--stdin", *names]
    proc = subprocess.run(cmd, cwd=cwd, input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise GitError(cmd, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    fields = proc.stdout.split(b"\0")
    out: dict[str, dict[str, str | None]] = {}
    for i in range(0, len(fields) - 2, 3):
        path = fields[i].decode("utf-8", "surrogateescape")
        value = fields[i + 2].decode("utf-8", "replace")
        out.setdefault(path, {})[fields[i + 1].decode()] = None if value in _NO_VALUE else value
    return out


class CheckAttr:
    """The value of `attribute` for paths in the repository at `cwd`."""

    def __init__(self, cwd: str | os.PathLike[str], attribute: str) -> None:
        self._cwd, self._attribute = cwd, attribute
        self._proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[str, str | None] = {}

    def get(self, path: str) -> str | None:
        """The attribute's value; None when unspecified or unset."""
        if path not in self._seen:
            self._seen[path] = self._ask(path)
        return self._seen[path]

    def _ask(self, path: str) -> str | None:
        if self._proc is None:
            self._proc = subprocess.Popen(
                ["git", "check-attr", "--stdin", "-z", self._attribute],
                cwd=self._cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(path.encode("utf-8", "surrogateescape") + b"\0")
        self._proc.stdin.flush()
        # The answer is three NUL-terminated fields: path, attribute, value.
        fields = [self._field() for _ in range(3)]
        value = fields[2].decode("utf-8", "replace")
        return None if value in ("unspecified", "unset") else value

    def _field(self) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        out = bytearray()
        while (c := self._proc.stdout.read(1)) != b"\0":
            if not c:
                raise GitError(
                    ["git", "check-attr", "--stdin"], -1, "the process ended unexpectedly"
                )
            out += c
        return bytes(out)

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait()
            self._proc = None
