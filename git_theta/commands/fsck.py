"""`git theta fsck [--repair] [REV...]`: verify the objects the repository needs; repair them.

Exit 0 with a summary line when every object is present and intact; otherwise one line per bad
object and exit 1. With `--repair`, bad objects are moved aside to `<store>/bad/<oid>` and they
and the missing ones are downloaded again, verified, from the remote; the exit is 1 only if
something could not be repaired (each such object is listed again).
"""

from __future__ import annotations

from typing import TextIO

from git_theta.errors import TransferError
from git_theta.git.repo import Repo
from git_theta.store import open_store
from git_theta.store.fsck import FsckReport, Problem
from git_theta.store.fsck import fsck as run_fsck
from git_theta.store.verify import check_object, move_aside

__all__ = ["fsck"]


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def fsck(revs: list[str], *, repair: bool, decode: bool = False, out: TextIO) -> int:
    """Verify (and with `repair`, restore) the objects REVs need; returns the exit code."""
    repo = Repo()
    store = open_store(repo)
    report = run_fsck(repo, store, revs, decode=decode)
    for problem in report.problems:
        out.write(problem.line() + "\n")
    if not report.problems:
        out.write(
            f"fsck: {report.objects} object(s) ({_mib(report.bytes)}) of {report.versions} "
            "version(s) verified; no problems.\n"
        )
        return 0
    if not repair:
        out.write(
            f"fsck: {len(report.problems)} bad object(s) of {report.objects} checked; "
            "`git theta fsck --repair` downloads them again from the remote.\n"
        )
        return 1
    left = _repair(repo, report, out)
    for problem in left:
        out.write(f"not repaired: {problem.line()}\n")
    fixed = len(report.problems) - len(left)
    out.write(f"fsck: repaired {fixed} of {len(report.problems)} bad object(s).\n")
    return 1 if left else 0


def _repair(repo: Repo, report: FsckReport, out: TextIO) -> list[Problem]:
    """Move corrupt objects aside, download every bad one, verify; returns what is still bad."""
    store = open_store(repo)
    for problem in report.problems:
        if not problem.missing:
            moved = move_aside(store, problem.ref.oid)
            if moved is not None:
                out.write(f"moved corrupt object {problem.ref.oid} to {moved}\n")
    from git_theta.transfer.remote import download

    refs = [p.ref for p in report.problems]
    try:
        download(repo, None, refs, users=report.users)
    except TransferError as exc:
        out.write(f"fsck: {exc}\n")
    left = []
    for problem in report.problems:
        why = check_object(store, problem.ref, problem.content_hash, decode=True)
        if why is not None:
            left.append(Problem(problem.ref, why, problem.where, problem.content_hash))
    return left
