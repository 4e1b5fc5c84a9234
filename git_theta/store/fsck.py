"""`git theta fsck`: is every object the repository needs present and intact?

Which objects:

- REVs given: every object the trees of those commits reference must be present and intact.
- By default: the same for what can be checked out without a download: the HEAD of every work
  tree, every local branch, every stash entry (its work tree and index commits), every index
  (conflict stages too) and an operation in progress (MERGE_HEAD, ...). Remote-tracking refs and
  tags are left out: their versions normally live on the remote until fetched. Besides, every
  object that any version reachable from a ref, a reflog or an index references and that is
  present in the store is verified, so corruption anywhere in the store is found; an object of
  an older version that is absent is not a problem (`prune --verify-remote` removes such, a
  clone never downloaded them).

Each object is read once however many versions share it, on one thread per core, and checked
by `verify.check_object`: its bytes sha256-hashed against the oid, its header parsed and, for a
dense entry, the content hash the header records compared with the metadata's; with `--decode`
it is also decoded and its tensor checked against that hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from git_theta.errors import RevisionError
from git_theta.git.repo import Repo, run_git
from git_theta.metadata import ObjectRef
from git_theta.store.objects import ObjectStore
from git_theta.store.reachable import (
    Version,
    all_versions,
    index_versions,
    pending_commits,
    snapshot_versions,
    unique,
)
from git_theta.store.verify import check_object, parallel

__all__ = ["FsckReport", "Problem", "default_tips", "fsck", "resolve_commits"]


@dataclass(frozen=True)
class Problem:
    """One bad object, with the first place that uses it.

    Attributes:
        why: "missing", or "corrupt (<reason>)".
        where: "commit 1a2b3c4, model.safetensors: layers.0.weight".
    """

    ref: ObjectRef
    why: str
    where: str
    content_hash: str | None = None

    @property
    def missing(self) -> bool:
        return self.why == "missing"

    def line(self) -> str:
        """The one line fsck prints for it."""
        kind, _, reason = self.why.partition(" ")
        detail = f": {reason.strip('()')}" if reason else ""
        return f"{kind} object {self.ref.oid} ({self.where}){detail}"


@dataclass
class FsckReport:
    """What fsck looked at and what it found."""

    versions: int = 0
    objects: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    users: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Plan:
    ref: ObjectRef
    content_hash: str | None
    where: str
    required: bool
    # a pack's members the versions use: (offset, length) -> the content hash (None: any)
    members: dict[tuple[int, int], str | None] = field(default_factory=dict)


def resolve_commits(repo: Repo, revs: Sequence[str]) -> list[str]:
    """The commit ids of REVs.

    Raises:
        RevisionError: a revision names no commit (git's own message).
    """
    commits = []
    for rev in revs:
        args = ["rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}"]
        proc = run_git(args, cwd=repo.toplevel or repo.git_dir, check=False)
        if proc.returncode != 0:
            # rev-parse --verify says only "Needed a single revision"; name the revision.
            raise RevisionError(["git", *args], proc.returncode, f"fatal: bad revision {rev!r}")
        commits.append(proc.stdout.decode().strip())
    return commits


def default_tips(repo: Repo) -> list[str]:
    """What can be checked out without a download: every work tree's HEAD, local branches,
    stash entries (with their index commits) and commits of operations in progress."""
    tips = [
        line.split()[1]
        for line in repo.git("worktree", "list", "--porcelain").decode().splitlines()
        if line.startswith("HEAD ") and line.split()[1].strip("0")  # not an unborn HEAD
    ]
    tips += repo.git("for-each-ref", "--format=%(objectname)", "refs/heads").decode().split()
    stash = repo.git("log", "-g", "--format=%H %P", "refs/stash", "--", check=False).decode()
    for line in stash.splitlines():
        commits = line.split()
        tips += commits[:1] + commits[2:3]  # the work tree commit and the index commit
    tips += pending_commits(repo)
    return list(dict.fromkeys(tips))


def fsck(
    repo: Repo, store: ObjectStore, revs: Sequence[str] = (), *, decode: bool = False
) -> FsckReport:
    """Check the objects REVs (default: see the module docstring) need.

    Args:
        decode: also decode every object and check its tensor (see `verify.check_object`).

    Raises:
        RevisionError: a revision names no commit.
    """
    if revs:
        required = snapshot_versions(repo, resolve_commits(repo, revs))
        extra: list[Version] = []
    else:
        required = unique([*snapshot_versions(repo, default_tips(repo)), *index_versions(repo)])
        extra = all_versions(repo)
    plans: dict[str, _Plan] = {}
    report = FsckReport(versions=len(unique([*required, *extra])))
    for is_required, group in ((True, required), (False, extra)):
        for version in group:
            for use in version.uses():
                where = f"{version.where}, {version.path}: {use.name}"
                users = report.users.setdefault(use.ref.oid, [])
                if len(users) < 2:
                    users.append(f"{version.path}: {use.name}")
                plan = plans.get(use.ref.oid)
                whole_hash = None if use.member else use.content_hash
                if plan is None:
                    plan = plans[use.ref.oid] = _Plan(use.ref, whole_hash, where, is_required)
                elif plan.content_hash is None and whole_hash is not None:
                    plan.content_hash = whole_hash
                if use.member is not None and plan.members.get(use.member) is None:
                    plan.members[use.member] = use.content_hash
    todo = [p for p in plans.values() if p.required or store.path(p.ref.oid).exists()]
    results = parallel(
        lambda p: check_object(store, p.ref, p.content_hash, decode=decode, members=p.members),
        todo,
    )
    for plan, why in zip(todo, results, strict=True):
        report.objects += 1
        report.bytes += plan.ref.size
        if why is not None and (plan.required or why != "missing"):
            report.problems.append(Problem(plan.ref, why, plan.where, plan.content_hash))
    return report
