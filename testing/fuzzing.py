"""The fuzz suite's harness (tests/fuzz/): how many cases, a time limit and a memory cap per
case, an audit of the files a case opens, and the check that an error is one clean line.

Every fuzz property has the same shape: whatever the input, the code under test either gives a
correct result or raises a GitThetaError whose message is one line; it never raises anything
else, never runs past `case_seconds()`, never opens a file it has no business reading, and
(under `memory_cap`) never reserves memory the input does not justify.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from hypothesis import Phase, settings

from git_theta.errors import GitThetaError

__all__ = [
    "EXAMPLES_ENV",
    "FORBIDDEN_ROOTS",
    "Hang",
    "OpenAudit",
    "SEED_ENV",
    "TIMEOUT_ENV",
    "assert_clean_stderr",
    "assert_one_line",
    "case_seconds",
    "examples",
    "memory_cap",
    "package_env",
    "run_with_timeout",
    "slow",
    "time_limit",
]

# How many cases the default profile runs per property (the normal test run), and the knob
# that runs many more on demand: GIT_THETA_FUZZ_EXAMPLES=5000.
EXAMPLES_ENV = "GIT_THETA_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 30
# A seed for other cases than the default run's fixed ones (any integer).
SEED_ENV = "GIT_THETA_FUZZ_SEED"
# Seconds one case may take before it counts as a hang. Generous: 8 test sessions may share
# 2 cores, and a cold `git` or Python start-up under that load takes seconds.
TIMEOUT_ENV = "GIT_THETA_FUZZ_TIMEOUT"
DEFAULT_TIMEOUT = 30.0

# Places no case may open a file in: system files a hostile oid or name could point at.
# /dev/null is allowed (subprocess uses it); the sentinel of each test is added per audit.
FORBIDDEN_ROOTS = ("/etc", "/dev", "/proc", "/sys")
_ALLOWED = frozenset({"/dev/null", "/dev/urandom"})


def examples(weight: float = 1.0) -> int:
    """Cases for a property: the configured count scaled by `weight` (expensive properties,
    such as those starting a process per case, take a fraction), at least 1."""
    base = int(os.environ.get(EXAMPLES_ENV, DEFAULT_EXAMPLES))
    return max(1, int(base * weight))


def slow(weight: float = 0.15) -> settings:
    """Settings for properties that start git or a git-theta process per case: fewer cases,
    and no shrinking (each run costs a process start; their inputs come from small sets and
    read well as they are). Call it in the test module, after the profile is loaded."""
    return settings(
        max_examples=examples(weight),
        phases=[p for p in settings.default.phases if p is not Phase.shrink],
    )


def case_seconds() -> float:
    return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))


class Hang(BaseException):
    """A case ran past its time limit. A BaseException, so that no `except Exception` in the
    code under test can turn a hang into an ordinary error."""


@contextmanager
def time_limit(seconds: float | None = None) -> Iterator[None]:
    """Fail the case (AssertionError) if the block runs longer than `seconds`: Hang is raised
    in the main thread where it is, and becomes the failure when it leaves the block."""
    limit = case_seconds() if seconds is None else seconds
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; the caller's own timeout must do
        return

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"the case ran longer than {limit:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    except Hang as exc:
        # Now out of the code under test: an ordinary failure, which Hypothesis reports
        # with its input (it lets BaseExceptions through unreported).
        raise AssertionError(f"hang: {exc}") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextmanager
def memory_cap(extra_bytes: int) -> Iterator[None]:
    """Limit this process's address space to its current size plus `extra_bytes` for the
    block (Linux). A buffer sized from a hostile header (an object declaring 1 TiB) then
    fails to be reserved, instead of passing unnoticed because the kernel maps it lazily.
    Use only around code that starts no threads: each new thread reserves its own arena."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class OpenAudit:
    """Records the files this process opens while active (a Python audit hook on the "open"
    event, which builtins.open, io.open and os.open raise), to show that a hostile input
    never makes git-theta read outside the repository. An strace would be too heavy.

    Args:
        sentinels: files outside the repository (and their directories) no case may open.
    """

    _installed = False
    _active: list[OpenAudit] = []

    def __init__(self, sentinels: Iterable[Path] = ()) -> None:
        self.sentinels = [Path(p).resolve() for p in sentinels]
        self.opened: list[str] = []
        if not OpenAudit._installed:
            sys.addaudithook(OpenAudit._hook)
            OpenAudit._installed = True

    @staticmethod
    def _hook(event: str, args: tuple[object, ...]) -> None:
        if event != "open" or not OpenAudit._active:
            return
        path = args[0]
        if isinstance(path, str | bytes | os.PathLike):
            for audit in OpenAudit._active:
                audit.opened.append(os.fsdecode(path))

    def __enter__(self) -> OpenAudit:
        OpenAudit._active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        OpenAudit._active.remove(self)

    def forbidden(self) -> list[str]:
        """The opened paths that are a sentinel, lie in a sentinel's directory, or lie under
        one of FORBIDDEN_ROOTS."""
        bad = []
        for name in self.opened:
            if name in _ALLOWED:
                continue
            path = Path(os.path.abspath(name))
            roots = [Path(r) for r in FORBIDDEN_ROOTS]
            roots += [s.parent if s.is_file() else s for s in self.sentinels]
            if any(path == r or r in path.parents for r in roots):
                bad.append(name)
            elif path.resolve() in self.sentinels:
                bad.append(name)
        return bad


def assert_one_line(exc: BaseException) -> None:
    """`exc` is an error meant for the user: a GitThetaError with a one-line message that
    does not call itself an internal error."""
    assert isinstance(exc, GitThetaError), f"{type(exc).__name__} escaped: {exc!r}"
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in message, f"a message of several lines: {message!r}"
    assert "internal error" not in message, message


def assert_clean_stderr(stderr: bytes, *, allow_git: bool = False) -> list[str]:
    """git-theta's stderr lines: each one line starting `git-theta:`, none a traceback or an
    internal error. With `allow_git`, git's own lines (`error:`, `fatal:`, hints) may be
    mixed in. Returns git-theta's lines."""
    text = stderr.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    ours = []
    for line in text.splitlines():
        if line.startswith("git-theta:"):
            ours.append(line)
        elif not allow_git:
            raise AssertionError(f"stray stderr line {line!r} in:\n{text}")
    return ours


def package_env(base: Mapping[str, str]) -> dict[str, str]:
    """`base` with PYTHONPATH leading to the git_theta this process imported, so that a
    subprocess runs the code under test, not another installed copy."""
    import git_theta

    root = str(Path(git_theta.__file__).resolve().parent.parent)
    rest = base.get("PYTHONPATH", "")
    return {**base, "PYTHONPATH": root + (os.pathsep + rest if rest else "")}


def run_with_timeout(
    args: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    input: bytes | None = None,
    seconds: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command; a run past the time limit is killed (its whole process group: git's
    filter children too) and fails the case as a hang."""
    limit = case_seconds() if seconds is None else seconds
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"hang: {args} ran longer than {limit:g} s; stderr: {err.decode(errors='replace')}"
        ) from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
