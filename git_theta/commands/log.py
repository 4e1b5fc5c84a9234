"""`git theta log [REV-RANGE] [-n N] [-- PATH...]`: each commit's per-parameter diff.

`git log -p` runs external diff drivers only with `--ext-diff`, and its textconv sees one
version at a time, so it cannot show how much a parameter moved. This walks the same commits
(`git log`'s own selection, first parents for merges) and prints, for each commit that changed
a tracked checkpoint, the table `git theta diff COMMIT^ COMMIT` prints. Only changed tensors are
read, from the local store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from git_theta.diffing.compare import CompareOptions, raise_for_missing
from git_theta.diffing.render import render
from git_theta.diffing.revisions import Endpoint, diff_endpoints
from git_theta.git.repo import Repo

__all__ = ["log"]


def log(
    revisions: Sequence[str],
    paths: Sequence[str],
    *,
    max_count: int | None,
    top: int | None,
    out: TextIO,
) -> int:
    """Write each selected commit's header and per-parameter diff (commits that changed no
    tracked checkpoint are skipped).

    Raises:
        RevisionError: a revision does not exist (git's own message).
        MissingObjectError: tensors that changed are not in the local store.
    """
    repo = Repo()
    try:
        pathspecs = repo.root_pathspecs(paths)
        args = ["--format=%H%x00%P%x00%an%x00%ad%x00%s", "--date=iso"]
        if max_count is not None:
            args.append(f"--max-count={max_count}")
        text = repo.commit_log(*args, *revisions, "--", *pathspecs).decode("utf-8", "replace")
        empty = None
        for line in text.splitlines():
            commit, parents, author, date, subject = line.split("\0")
            parent = parents.split()[0] if parents else None
            if parent is None:
                empty = empty or repo.empty_tree()
            old = Endpoint(f"{commit[:12]}^", parent or empty)
            compared = diff_endpoints(
                repo, old, Endpoint(commit[:12], commit), pathspecs, CompareOptions()
            )
            if not compared.report.files:
                continue
            raise_for_missing(compared.report.files)
            out.write(f"commit {commit}\nAuthor: {author}\nDate:   {date}\n\n    {subject}\n\n")
            out.write(render(compared.report, "text", top=top))
            out.write("\n")
    finally:
        repo.close()
    return 0
