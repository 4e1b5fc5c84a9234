"""`git theta pager`: per-parameter tables in `git show` and `git log -p`.

Those commands run an external diff driver only with `--ext-diff`; without it a tracked
checkpoint shows as the line diff of two textconv texts, which cannot say how far a
parameter moved. `git theta install` makes this command their pager (`pager.show`,
`pager.log`; git runs a pager only when its output is a terminal). It replaces each
checkpoint block, found by its `diff=theta` attribute, with the table `git diff` prints,
computed from the two metadata blobs the block's `index` line names (only changed tensors
are read), and hands everything on to the user's own pager: the one `git var GIT_PAGER`
names (GIT_PAGER, core.pager, PAGER, then git's default). Every other line passes through
as it comes. A block it cannot turn into a table (objects not fetched, an id too short to
be unique, output that is not a plain patch) is shown as git printed it.

Piped output keeps the textconv text; `git log -p | git theta pager` turns it into tables
without a terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import IO, TYPE_CHECKING, Literal

from git_theta.git.patch import PatchBlock, PatchScanner
from git_theta.git.repo import run_git

if TYPE_CHECKING:
    from git_theta.diffing.sides import Side
    from git_theta.git.repo import Repo

__all__ = ["pager"]

_CHUNK = 1 << 16
# git's default colors for what the table shows (color.diff.frag / new / old).
_SUMMARY, _ADDED, _REMOVED, _RESET = b"\x1b[36m", b"\x1b[32m", b"\x1b[31m", b"\x1b[m"


def _user_pager() -> str | None:
    """The pager git would run if pager.<cmd> did not name us; None for none (`cat`)."""
    proc = run_git(["var", "GIT_PAGER"], cwd=None, check=False)
    command = proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""
    if "theta pager" in command:  # core.pager or PAGER is us: do not start ourselves again
        command = "less"
    return None if command in ("", "cat") else command


class _Reader:
    """Checkpoint blocks of one repository as tables."""

    def __init__(self, repo: Repo) -> None:
        from git_theta.git.checkattr import CheckAttr
        from git_theta.store import open_store

        self.repo = repo
        self.store = open_store(repo)
        self.attrs = CheckAttr(repo.toplevel or repo.git_dir, "diff")
        noprefix = repo.config_get("diff.noprefix") or ""
        self.prefixed = noprefix.lower() not in ("true", "yes", "on", "1")

    def table(self, block: PatchBlock) -> list[bytes] | None:
        path = block.path(prefixed=self.prefixed)
        if path is None or self.attrs.get(path) != "theta":
            return None
        from git_theta.diffing.compare import compare
        from git_theta.diffing.render import file_lines

        old, new = self._side(block.old_blob, path, "a"), self._side(block.new_blob, path, "b")
        if old is False or new is False:
            return None
        result = compare(path, old, new)
        if result.missing:
            note = (
                f"(git-theta: {len(result.missing)} tensor object(s) of {path} are not in the "
                "local store; `git theta fetch` them to see the per-parameter table)\n"
            )
            return [*block.lines(), note.encode()]
        return block.header + _colored(file_lines(result), block.colored)

    def _side(self, blob: str | None, path: str, prefix: str) -> Side | None | Literal[False]:
        """The version in `blob` (None: the side does not exist; False: unreadable)."""
        if blob is None:
            return None
        from git_theta.diffing.sides import side_from_bytes

        data = self.repo.read_blob(blob)
        if data is None:  # an abbreviated id that is not unique, or not a blob
            return False
        label = f"{prefix}/{path}"
        return side_from_bytes(data, path=path, label=label, store=self.store, repo=self.repo)

    def close(self) -> None:
        self.attrs.close()
        self.repo.close()


class _Tables:
    """The callback PatchScanner asks: a checkpoint block's table, or None to keep it.

    The repository and the diff machinery are loaded at the first block that may be ours,
    so `git log` without -p costs no more than passing lines through.
    """

    def __init__(self) -> None:
        self._reader: _Reader | None = None
        self._outside = False  # not in a repository: every block stays as git printed it

    def __call__(self, block: PatchBlock) -> list[bytes] | None:
        if self._outside or not (block.old_blob or block.new_blob):
            return None
        try:
            if self._reader is None:
                self._reader = self._open()
            return self._reader.table(block) if self._reader is not None else None
        except Exception:  # noqa: BLE001 - a pager that stops loses the user's output
            return None

    def _open(self) -> _Reader | None:
        from git_theta.errors import GitThetaError
        from git_theta.git.repo import Repo

        try:
            return _Reader(Repo())
        except GitThetaError:
            self._outside = True
            return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _colored(lines: list[str], colored: bool) -> list[bytes]:
    out = []
    for i, line in enumerate(lines):
        data = line.encode("utf-8", "surrogateescape")
        color = _SUMMARY if i == 0 else None
        if i > 1 and line.lstrip().startswith("added"):
            color = _ADDED
        elif i > 1 and line.lstrip().startswith("removed"):
            color = _REMOVED
        out.append((color + data + _RESET if colored and color else data) + b"\n")
    return out


def _pump(source: int, sink: IO[bytes], scanner: PatchScanner) -> None:
    """Lines from `source` through `scanner` to `sink`, flushed after each read so the
    output keeps up with git's."""
    held = b""
    while chunk := os.read(source, _CHUNK):
        data = held + chunk
        cut = data.rfind(b"\n") + 1
        held = data[cut:]
        shown: list[bytes] = []
        for line in data[:cut].split(b"\n")[:-1]:
            shown += scanner.feed(line + b"\n")
        if shown:
            sink.write(b"".join(shown))
            sink.flush()
    tail = scanner.feed(held) if held else []
    sink.write(b"".join(tail + scanner.close()))
    sink.flush()


def pager(*, source: int = 0, out: IO[bytes]) -> int:
    """Show git's output read from fd `source`, checkpoint blocks as tables, through the
    user's pager when `out` is a terminal, else on `out`."""
    command = _user_pager() if out.isatty() else None
    tables = _Tables()
    proc = None
    if command is not None:
        # Ctrl-C is for the pager the user sees (less ignores it); git's end of the pipe
        # closing is what stops us.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE)
    sink = out if proc is None or proc.stdin is None else proc.stdin
    try:
        _pump(source, sink, PatchScanner(tables))
    except BrokenPipeError:
        # The reader left before the end: nothing more to show. Python flushes stdout again
        # at exit, which would raise on the closed pipe.
        if proc is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    finally:
        tables.close()
        if proc is not None:
            try:
                sink.close()
            except BrokenPipeError:
                pass
            proc.wait()
    return 0
