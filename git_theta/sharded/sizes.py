"""`metadata.total_size` and `total_parameters` of a merged shard index, from the merged
shards' tensors.

transformers and safetensors define them as the sums of the byte sizes and of the element
counts of the tensors the `weight_map` names. After a merge each parameter's tensor is the one its three-way merge
kept (git_theta/merges): a size changed on one side only takes that side's, and a parameter
both sides added, removed or resized alike counts once, which `ours + theirs - base` gets
wrong.

Git runs the index's merge driver before the shards' results reach the work tree, and tells
a driver only the three versions of its own file. So the sides' shards are read from the
commits being merged, as git-theta metadata (or safetensors headers) through `git cat-file`:
ours is HEAD; theirs is the commit git names in `GITHEAD_<oid>` (`git merge`, `git pull`),
the pick in progress of a rebase (`rebase-merge/done`) or of a cherry-pick or revert of
several commits (the first line of `sequencer/todo`), or else the commit the Git command
running the driver names (`git cherry-pick REV`, `git revert REV`, `git stash pop|apply
[STASH]`: read from /proc, git_theta/git/invoker.py). The base is their merge base, for a
pick the picked commit's parent (`-m N`: its Nth), for a revert the reverted commit (theirs
is then its parent), for a stash the commit it was made on. Where theirs cannot be known (no
/proc, a command line that names several commits) or a shard cannot be read, the caller
falls back to arithmetic and `git theta check` reports a wrong total.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from git_theta.errors import CheckpointError, GitError
from git_theta.git import invoker
from git_theta.git.repo import Repo
from git_theta.sharded.consistency import shard_tensors

__all__ = ["merge_commits", "merged_totals"]

# parameter -> (bytes, elements)
Sizes = dict[str, tuple[int, int]]
# A commit id as git writes it in GITHEAD_<oid> and in a todo list (maybe abbreviated); only
# such text reaches `git rev-parse`.
_HEX = re.compile(r"[0-9a-f]{4,64}")


def _verified(repo: Repo, rev: str) -> str | None:
    out = repo.git("rev-parse", "-q", "--verify", f"{rev}^{{commit}}", check=False)
    return out.decode().strip() or None


def _picked(repo: Repo) -> str | None:
    """The commit a rebase is picking now: the last line of `rebase-merge/done`."""
    done = repo.git_dir / "rebase-merge" / "done"
    try:
        lines = [ln.split() for ln in done.read_text(encoding="utf-8").splitlines()]
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    picks = [ln for ln in lines if len(ln) >= 2 and ln[0] in ("pick", "p", "edit", "e")]
    return _verified(repo, picks[-1][1]) if picks and _HEX.fullmatch(picks[-1][1]) else None


def merge_commits(repo: Repo, env: Mapping[str, str] | None = None) -> tuple[str, str, str] | None:
    """(base, ours, theirs) commits of the merge git is running, or None when git does not
    say which commit theirs is."""
    env = os.environ if env is None else env
    named = [k[len("GITHEAD_") :] for k in env if k.startswith("GITHEAD_")]
    named = [oid for oid in named if _HEX.fullmatch(oid)]
    ours = _verified(repo, "HEAD")
    if ours is None:
        return None
    if len(named) == 1 and (theirs := _verified(repo, named[0])) is not None:
        out = repo.git("merge-base", ours, theirs, check=False).decode().split()
        return (out[0], ours, theirs) if out else None
    picked = _picked(repo)
    if picked is not None and (parent := _verified(repo, f"{picked}^")) is not None:
        return parent, ours, picked
    sides = _sequencer_pick(repo) or _commanded(repo)
    return (sides[0], ours, sides[1]) if sides is not None else None


def _sides(repo: Repo, action: str, rev: str, mainline: int = 1) -> tuple[str, str] | None:
    """(base, theirs) for picking (`pick`) or reverting (`revert`) `rev`."""
    commit = _verified(repo, rev)
    parent = _verified(repo, f"{rev}^{mainline}") if commit is not None else None
    if commit is None or parent is None:
        return None
    return (parent, commit) if action == "pick" else (commit, parent)


def _sequencer_pick(repo: Repo) -> tuple[str, str] | None:
    """A cherry-pick or revert of several commits: the first line of `sequencer/todo` is the
    one being applied."""
    try:
        first = (repo.git_dir / "sequencer" / "todo").read_text(encoding="utf-8").split("\n", 1)
    except (OSError, UnicodeDecodeError):
        return None
    words = first[0].split()
    if len(words) < 2 or not _HEX.fullmatch(words[1]) or words[0] not in ("pick", "revert"):
        return None
    return _sides(repo, words[0], words[1])


# Options of cherry-pick/revert that take the next word as their value.
_PICK_VALUED = {"-m", "--mainline", "-s", "--strategy", "-X", "--strategy-option", "--cleanup"}


def _commanded(repo: Repo) -> tuple[str, str] | None:
    """(base, theirs) from the command line of the Git command running this driver: a
    cherry-pick or revert of one commit, or a stash pop/apply."""
    found = invoker.find_invoker()
    command, args = invoker.git_subcommand(found.argv) if found else (None, ())
    if command == "stash":
        words = [a for a in args if not a.startswith("-")]
        if not words or words[0] not in ("pop", "apply") or len(words) > 2:
            return None
        stash = words[1] if len(words) == 2 else "stash@{0}"
        stash = f"stash@{{{stash}}}" if stash.isdigit() else stash
        return _sides(repo, "pick", stash)
    if command not in ("cherry-pick", "revert"):
        return None
    revs: list[str] = []
    mainline = "1"
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _PICK_VALUED:
            mainline = (
                args[i + 1] if arg in ("-m", "--mainline") and i + 1 < len(args) else mainline
            )
            i += 2
            continue
        if arg.startswith("--mainline=") or (arg.startswith("-m") and arg[2:].isdigit()):
            mainline = arg.split("=", 1)[1] if "=" in arg else arg[2:]
        elif not arg.startswith("-"):
            revs.append(arg)
        i += 1
    if len(revs) != 1 or ".." in revs[0] or not mainline.isdigit():
        return None
    return _sides(repo, "pick" if command == "cherry-pick" else "revert", revs[0], int(mainline))


def _sizes(repo: Repo, commit: str, folder: str, shards: set[str]) -> Sizes | None:
    """Every parameter's byte size and element count in the `shards` of `folder` at `commit`."""
    out: Sizes = {}
    for shard in shards:
        path = f"{folder}/{shard}" if folder else shard
        data = repo.read_blob(f"{commit}:{path}")
        if data is None:
            continue  # a shard this side does not have holds nothing of it
        try:
            out.update(shard_tensors(data, source=path))
        except CheckpointError:
            return None
    return out


def merged_totals(
    repo: Repo,
    path: str,
    commits: tuple[str, str, str],
    shards: tuple[set[str], set[str], set[str]],
    merged: Mapping[str, str],
) -> dict[str, int] | None:
    """`total_size` and `total_parameters` of the tensors `merged` (the merged weight_map)
    names, each taken from the side its merge keeps; None when a shard cannot be read or a
    parameter is in no side's shards.

    Args:
        path: the index's path (its shards are beside it).
        commits: base, ours, theirs.
        shards: the shard file names each side's weight_map names.
    """
    folder = path.rpartition("/")[0]
    try:
        base, ours, theirs = (
            _sizes(repo, commit, folder, names)
            for commit, names in zip(commits, shards, strict=True)
        )
    except GitError:
        return None
    if base is None or ours is None or theirs is None:
        return None
    size = count = 0
    for name in merged:
        a, t = ours.get(name), theirs.get(name)
        if a is None or (t is not None and a != t and a == base.get(name)):
            kept = t  # theirs has it alone, or only theirs changed its shape or dtype
        else:
            kept = a  # ours alone, alike, or ours changed it (a strategy keeps ours' shape)
        if kept is None:
            return None
        size += kept[0]
        count += kept[1]
    return {"total_size": size, "total_parameters": count}
