"""Writing a new version of one tracked checkpoint: its format, its commit, its work tree file."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from git_theta import direct, settings
from git_theta import metadata as md
from git_theta.clean import format_override
from git_theta.context import RepoContext
from git_theta.errors import ConfigError, GitThetaError
from git_theta.formats import Format, get_format
from git_theta.git.repo import Repo
from git_theta.updates.policy import UpdatePolicy

__all__ = ["commit_path", "format_for", "stage_state_dict", "write_worktree"]

# The format of a new tracked path, by its suffix, when neither the path's earlier versions
# nor a `theta-format` attribute / `theta.format` config say otherwise.
SUFFIX_FORMATS = {
    ".safetensors": "safetensors",
    ".npz": "npz",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".bin": "pytorch",
}


def format_for(repo: Repo, rel: str) -> Format:
    """The format a new version of `rel` is written in: that of its version in the index or
    HEAD, else the `theta-format` attribute or `theta.format` config, else by suffix.

    Raises:
        ConfigError: none of these tells.
    """
    for spec in (f":{rel}", f"HEAD:{rel}"):
        blob = repo.read_current_blob(spec)
        if blob is not None and md.looks_like_metadata(blob[: len(md.MAGIC)]):
            try:
                return get_format(md.decode(blob, source=spec).format)
            except GitThetaError:
                continue
    named = format_override(repo, rel, settings.FORMAT.read(repo))
    if named:
        return get_format(named)
    by_suffix = SUFFIX_FORMATS.get(Path(rel).suffix.lower())
    if by_suffix is None:
        known = ", ".join(sorted(set(SUFFIX_FORMATS.values())))
        raise ConfigError(
            f"{rel}: cannot tell which checkpoint format to write; name it with the "
            f"`theta-format` attribute (one of {known})"
        )
    return get_format(by_suffix)


def stage_state_dict(
    ctx: RepoContext, state_dict: Mapping[str, Any], rel: str, policy: UpdatePolicy | None
) -> str:
    """Store `state_dict` as the new version of tracked `rel` and put its metadata in the
    index; returns the metadata blob's id (see `Repository.stage`).

    Raises:
        ConfigError: `rel` is not tracked by git-theta, or its format cannot be told.
        CheckpointError: a value is not a tensor, or of a dtype the format cannot hold.
    """
    from git_theta.clean import Cleaner
    from git_theta.state_dict import state_dict_stream

    repo = ctx.repo
    if repo.check_attr("filter", rel) != "theta":
        raise ConfigError(f"{rel}: not tracked by git-theta; run `git theta track {rel}` first")
    fmt = format_for(repo, rel)
    cleaner = Cleaner(ctx)
    try:
        with state_dict_stream(state_dict, fmt, rel, ctx.store.tmp_dir) as stream:
            data = cleaner.clean(stream, rel, policy=policy)
    finally:
        cleaner.close()
    blob = repo.git("hash-object", "-w", "--no-filters", "--stdin", input=data).decode().strip()
    repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}")
    return blob


def commit_path(repo: Repo, rel: str, oid: str, message: str) -> str:
    """Commit HEAD's tree with `rel` set to blob `oid` and move HEAD (its branch) there.

    The tree is built in a private index, so changes the user staged stay staged and out of
    the commit. Plumbing only: commit hooks do not run.
    """
    parent = repo.git("rev-parse", "--verify", "--quiet", "HEAD", check=False).decode().strip()
    with tempfile.TemporaryDirectory(dir=repo.git_dir, prefix="theta-save-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if parent:
            repo.git("read-tree", parent, env=env)
        repo.git("update-index", "--add", "--cacheinfo", f"100644,{oid},{rel}", env=env)
        tree = repo.git("write-tree", env=env).decode().strip()
    parents = ["-p", parent] if parent else []
    commit = repo.git("commit-tree", tree, *parents, input=message.encode("utf-8"))
    new = commit.decode().strip()
    # The old value makes git refuse if another process moved the branch meanwhile.
    old = parent or "0" * len(new)
    subject = message.splitlines()[0] if message.strip() else ""
    repo.git("update-ref", "-m", f"git-theta save: {subject}", "HEAD", new, old)
    return new


def write_worktree(ctx: RepoContext, rel: str, oid: str) -> None:
    """Write the checkpoint that metadata blob `oid` describes to `rel` in the work tree
    (temp file, then rename) and refresh its index entry, so `git status` is clean."""
    from git_theta.smudge import Smudger

    repo = ctx.repo
    data = repo.read_blob(oid)
    if data is None:
        raise GitThetaError(f"{rel}: metadata blob {oid} is not in the repository")
    target = repo.worktree / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    Smudger(ctx).write_file(data, rel, target)
    # `stage` put `oid` in the index; its entry gets the new file's stat data without Git
    # feeding the whole file to the clean filter again.
    direct.index_written(ctx, {rel: data})
