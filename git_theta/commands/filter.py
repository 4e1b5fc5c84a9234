"""The filter entry points git runs: `filter-process` (long-running) and one-shot clean/smudge."""

from __future__ import annotations

import fcntl
import os
import sys
import traceback
from typing import BinaryIO, TextIO

from git_theta import settings
from git_theta.clean import Cleaner
from git_theta.cleaned import Cleaned
from git_theta.context import RepoContext
from git_theta.direct import DirectCheckout
from git_theta.error_handler import write_crash_log
from git_theta.errors import GitThetaError
from git_theta.git.filter_process import FilterServer, Request
from git_theta.git.patch import quote_path
from git_theta.git.pktline import ContentWriter
from git_theta.smudge import PassThrough, Smudger

__all__ = [
    "clean",
    "filter_process",
    "pipe_streams",
    "serve_clean",
    "serve_process",
    "serve_smudge",
    "smudge",
]

TRACE_ENV = settings.TRACE_ENV.name
PIPE_BYTES = 1024 * 1024


def _describe(exc: BaseException, path: str) -> str:
    """One line naming the file as git shows it: `path` holds git's bytes (surrogateescape
    text), and a name that is not printable ASCII is shown quoted, with octal escapes."""
    shown = quote_path(path)
    if isinstance(exc, GitThetaError):
        msg = str(exc)
        if path:
            msg = msg.replace(path, shown)
        msg = msg if msg.startswith(shown) else f"{shown}: {msg}"
    else:
        try:
            details = f"details in {write_crash_log(exc)}"
        except OSError:
            details = f"set {TRACE_ENV}=1 for details"
        msg = f"{shown}: internal error: {type(exc).__name__}: {exc} ({details})"
    return msg


def _report(err: TextIO, action: str, path: str, exc: BaseException) -> None:
    err.write(f"git-theta: {action} failed: {_describe(exc, path)}\n")
    if settings.TRACE_ENV.read() and not isinstance(exc, GitThetaError):
        traceback.print_exception(exc, file=err)
    err.flush()


def filter_process(stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    """Serve git's long-running filter protocol until git closes our input."""
    server = FilterServer(stdin, stdout)
    server.handshake()
    ctx: RepoContext | None = None
    cleaner: Cleaner | None = None
    smudger: Smudger | None = None
    direct: DirectCheckout | None = None
    cleaned: Cleaned | None = None

    def handle(request: Request, out: ContentWriter) -> None:
        nonlocal ctx, cleaner, smudger, direct, cleaned
        if ctx is None:  # after the handshake, so git never waits on our start-up
            ctx = RepoContext()
            cleaner, smudger = Cleaner(ctx), Smudger(ctx)
            direct, cleaned = DirectCheckout(ctx, smudger), Cleaned(ctx, smudger)
        assert cleaner is not None and smudger is not None
        assert direct is not None and cleaned is not None
        if request.command == "clean":
            cleaned.starting(request.pathname)
            data = cleaner.clean(request.content, request.pathname)  # type: ignore[arg-type]
            out.write(data)
            cleaned.cleaned(request.pathname, data)
        elif request.command == "smudge":
            data = request.content.readall()
            try:
                meta = smudger.parse(data, request.pathname)  # once: 100k entries cost seconds
            except PassThrough:
                out.write(data)
                return
            if direct.take(data, meta, request.pathname):
                out.write(data)  # Git writes the metadata; we write the checkpoint at the end
                return
            smudger.smudge(data, request.pathname, out, meta=meta)  # type: ignore[arg-type]
        else:
            raise GitThetaError(f"unsupported filter command {request.command!r}")

    def report(request: Request, exc: BaseException) -> None:
        _report(stderr, request.command, request.pathname, exc)

    try:
        for request in server.requests():
            server.respond(request, handle, report)
        if direct is not None:
            try:
                direct.finish_pending()
            except Exception as exc:  # noqa: BLE001 - reported; the files keep their metadata
                stderr.write(
                    f"git-theta: writing checkpoints failed: {_describe(exc, '').lstrip(': ')}; "
                    "run `git theta checkout` to finish\n"
                )
                return 1
        if cleaned is not None:
            try:
                cleaned.finish()
            except Exception as exc:  # noqa: BLE001 - only the next checkout's speed is lost
                _report(stderr, "keeping", "", exc)
    finally:
        if cleaner is not None:
            cleaner.close()
        if ctx is not None:
            ctx.close()
    return 0


def clean(path: str, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    """One-shot clean filter (`filter.theta.clean`): checkpoint on stdin, metadata on stdout."""
    try:
        with RepoContext() as ctx:
            cleaner = Cleaner(ctx)
            try:
                stdout.write(cleaner.clean(stdin, path))
            finally:
                cleaner.close()
    except Exception as exc:  # noqa: BLE001 - mapped to one line and exit 1
        _report(stderr, "clean", path, exc)
        return 1
    stdout.flush()
    return 0


def smudge(path: str, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    """One-shot smudge filter (`filter.theta.smudge`): metadata on stdin, checkpoint on stdout."""
    data = stdin.read()
    try:
        with RepoContext() as ctx:
            try:
                Smudger(ctx).smudge(data, path, stdout)
            except PassThrough:
                stdout.write(data)
    except Exception as exc:  # noqa: BLE001 - mapped to one line and exit 1
        _report(stderr, "smudge", path, exc)
        return 1
    stdout.flush()
    return 0


def pipe_streams() -> tuple[BinaryIO, BinaryIO]:
    """stdin and stdout for talking to git: large buffers, and on Linux larger pipes.

    A checkpoint crosses the pipe in 64 KiB packets. With the default 64 KiB pipe and 8 KiB
    buffers every packet costs several syscalls and a context switch each way; a 1 MiB pipe
    lets git run ahead, and 1 MiB buffers batch the packet headers.
    """
    for fd in (sys.stdin.fileno(), sys.stdout.fileno()):
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except (AttributeError, OSError):
            pass  # not Linux, not a pipe, or over the system limit: the default still works
    stdin = open(sys.stdin.fileno(), "rb", buffering=PIPE_BYTES, closefd=False)  # noqa: SIM115
    stdout = open(sys.stdout.fileno(), "wb", buffering=PIPE_BYTES, closefd=False)  # noqa: SIM115
    return stdin, stdout


def _one_blas_thread() -> None:
    """Filters already decode several tensors at once on worker threads; a BLAS pool per
    matrix product (rebuilding low-rank updates) on top of that only oversubscribes the cores.
    Must run before numpy is first imported (this module never imports it); a user's own
    setting wins."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def serve_process() -> int:
    """`git-theta filter-process`: the protocol on this process's stdin and stdout."""
    _one_blas_thread()
    stdin, stdout = pipe_streams()
    return filter_process(stdin, stdout, sys.stderr)


def serve_clean(path: str) -> int:
    """`git-theta clean PATH` on this process's stdin and stdout."""
    _one_blas_thread()
    stdin, stdout = pipe_streams()
    return clean(path, stdin, stdout, sys.stderr)


def serve_smudge(path: str) -> int:
    """`git-theta smudge PATH` on this process's stdin and stdout."""
    _one_blas_thread()
    stdin, stdout = pipe_streams()
    return smudge(path, stdin, stdout, sys.stderr)
