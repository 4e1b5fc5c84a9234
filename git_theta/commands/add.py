"""`git theta add`: stage checkpoints with an update policy (low-rank, IA3, sparse, ...).

The checkpoint is cleaned here, in this process, with the policy from the flags; the metadata
goes into the index; where the stored version is not what the file holds (the file kept the
base while an adapter was added, or a lossy rank-R update), the file is rewritten from the
index; then plain `git add` refreshes the index entry, and its clean, without any flags, gives
the same metadata back: unchanged tensors by hash, a PEFT-merged tensor by the rounding its
update allows. So `git status` is clean afterwards and later plain `git add`s keep working.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from git_theta import metadata as md
from git_theta.clean import Cleaner
from git_theta.context import RepoContext
from git_theta.errors import ConfigError, GitThetaError
from git_theta.git.repo import Repo
from git_theta.smudge import Smudger
from git_theta.updates.policy import CleanReport, UpdatePolicy

__all__ = ["add"]


def _relative(repo: Repo, path: str) -> str:
    full = Path(path).resolve()
    try:
        return full.relative_to(repo.worktree.resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"{path}: outside the repository at {repo.worktree}") from None


def add(
    paths: Sequence[str],
    policy: UpdatePolicy | None,
    *,
    out: TextIO,
    accept_lossy: bool = False,
    confirm: Callable[[str], bool] | None = None,
) -> int:
    """Stage `paths` with `policy`.

    Args:
        accept_lossy: store a lossy update (a truncated SVD) and rewrite the file with it
            without asking.
        confirm: asks the user a yes/no question (at a terminal); None: refuse lossy updates
            unless `accept_lossy`.

    Raises:
        ConfigError: a lossy update was neither accepted nor confirmed; nothing was staged.
    """
    repo = Repo()
    if policy is not None:
        policy.validate()
    with RepoContext(repo) as ctx:
        cleaner = Cleaner(ctx)
        try:
            for path in paths:
                rel = _relative(repo, path)
                consent = (lambda _q: True) if accept_lossy else confirm
                _add_one(repo, cleaner, rel, policy, out, consent)
        finally:
            cleaner.close()
    return 0


def _add_one(
    repo: Repo,
    cleaner: Cleaner,
    rel: str,
    policy: UpdatePolicy | None,
    out: TextIO,
    consent: Callable[[str], bool] | None = None,
) -> None:
    file = repo.worktree / rel
    if not file.is_file():
        raise ConfigError(f"{rel}: no such file")
    if repo.check_attr("filter", rel) != "theta":
        raise ConfigError(f"{rel}: not tracked by git-theta; run `git theta track {rel}` first")
    report = CleanReport()
    with file.open("rb") as f:
        data = cleaner.clean(f, rel, policy=policy, report=report)
    backup = _consent_to_lossy(repo, rel, report, out, consent) if report.lossy else None
    mode = "100755" if os.stat(file).st_mode & stat.S_IXUSR else "100644"
    oid = repo.git("hash-object", "-w", "--no-filters", "--stdin", input=data).decode().strip()
    repo.git("update-index", "--add", "--cacheinfo", f"{mode},{oid},{rel}")
    if report.materialize:
        # The file as the metadata describes it (temp file, then rename; its mode kept).
        Smudger(cleaner.ctx).write_file(data, rel, file)
    repo.git("add", "--", rel)
    # rev-parse, not the session's cat-file process, which still sees the index it started with.
    if repo.git("rev-parse", f":{rel}").decode().strip() != oid:
        raise GitThetaError(
            f"{rel}: `git add` did not reproduce the metadata `git theta add` made; the index "
            "holds what plain `git add` made"
        )
    _summarise(rel, md.decode(data, source=rel), report, out)
    if backup is not None:
        out.write(f"  the file as it was is kept at {backup}\n")


def _consent_to_lossy(
    repo: Repo,
    rel: str,
    report: CleanReport,
    out: TextIO,
    consent: Callable[[str], bool] | None,
) -> Path:
    """Ask before a lossy update replaces the user's weights; keep a copy of the file.

    The objects already stored are harmless: nothing references them until the index does,
    and `git theta prune` reclaims them.
    """
    for note in report.notes:
        out.write(f"{rel}: {note}\n")
    out.flush()
    question = (
        f"Store the approximation of {len(report.lossy)} parameter(s) and rewrite {rel} with "
        "it (a copy of the file is kept)?"
    )
    if consent is None or not consent(question):
        raise ConfigError(
            f"{rel}: --rank keeps only part of the change of {len(report.lossy)} parameter(s) "
            f"({', '.join(report.lossy[:3])}{', ...' if len(report.lossy) > 3 else ''}); "
            "nothing was staged or rewritten: pass --accept-lossy to store it and rewrite the "
            "file, or leave out --rank to infer a rank that keeps the change"
        )
    backup = repo.git_dir / "theta" / "backup" / rel
    backup.parent.mkdir(parents=True, exist_ok=True)
    backup.unlink(missing_ok=True)
    try:
        os.link(repo.worktree / rel, backup)  # the rewrite renames over the file: a link is a copy
    except OSError:
        shutil.copy2(repo.worktree / rel, backup)
    return backup


def _summarise(rel: str, meta: md.Metadata, report: CleanReport, out: TextIO) -> None:
    changed = sum(report.stored.values())
    parts = [f"{n} {kind}" for kind, n in sorted(report.stored.items())]
    parts.append(f"{len(meta.params) - changed} unchanged")
    out.write(f"{rel}: {', '.join(parts)}\n")
    for note in report.notes:
        out.write(f"  {note}\n")
    if report.materialize:
        out.write(
            f"  rewrote {rel} with the stored weights of {len(report.materialize)} parameter(s)\n"
        )
