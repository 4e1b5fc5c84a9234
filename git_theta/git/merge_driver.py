"""The merge driver git calls as `git-theta merge-driver %O %A %B %P`.

Contract (https://git-scm.com/docs/gitattributes#_defining_a_custom_merge_driver): %O, %A and
%B are temp files holding the base, ours and theirs versions of %P; the result goes into %A;
exit 0 for a clean merge, non-zero for a conflict.

Until parameter-wise merging lands, this does what git does for any text file: a line-wise
three-way merge of the metadata. With one parameter per line, parameters changed on
different sides merge cleanly; the same parameter changed on both sides is a textual conflict.
"""

from __future__ import annotations

from git_theta.git.repo import run_git

__all__ = ["merge_driver"]


def merge_driver(base: str, ours: str, theirs: str, path: str) -> int:
    proc = run_git(
        [
            "merge-file",
            "-L",
            f"ours:{path}",
            "-L",
            f"base:{path}",
            "-L",
            f"theirs:{path}",
            ours,
            base,
            theirs,
        ],
        check=False,
    )
    if proc.returncode < 0 or proc.returncode > 127:
        raise RuntimeError(f"git merge-file failed on {path}: {proc.stderr.decode()}")
    return 0 if proc.returncode == 0 else 1
