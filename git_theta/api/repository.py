"""`Repository`: a Git repository's tracked checkpoints, read, written, compared and merged."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from git_theta import metadata as md
from git_theta.api.checkpoint import Checkpoint, ParamInfo
from git_theta.api.merging import merge_checkpoints
from git_theta.api.reports import diff_document
from git_theta.api.saving import commit_path, stage_state_dict, write_worktree
from git_theta.context import RepoContext
from git_theta.errors import ConfigError, GitThetaError, RevisionError
from git_theta.frameworks import Framework
from git_theta.git.repo import Repo
from git_theta.metadata import Metadata, ParamEntry
from git_theta.tensor import RawTensor
from git_theta.updates.policy import UpdatePolicy

if TYPE_CHECKING:
    from git_theta.store.fsck import FsckReport

__all__ = ["Repository"]


class _Reading:
    """What a `Repository` reads: the repository, its context, and tracked checkpoints at any
    revision (the reading half of `Repository`, kept apart to keep each class one concern)."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        self._repo = Repo(Path(path).resolve())
        self._context: RepoContext | None = None

    @property
    def root(self) -> Path:
        """The work tree's top directory."""
        return self._repo.worktree

    def close(self) -> None:
        if self._context is not None:
            self._context.close()  # closes the Repo too
            self._context = None
        else:
            self._repo.close()

    @property
    def _ctx(self) -> RepoContext:
        if self._context is None:
            self._context = RepoContext(self._repo)
        return self._context

    def _relative(self, path: str | os.PathLike[str]) -> str:
        full = Path(path) if Path(path).is_absolute() else self.root / path
        try:
            return Path(os.path.normpath(full)).relative_to(self.root).as_posix()
        except ValueError:
            raise ConfigError(f"{path}: outside the repository at {self.root}") from None

    def commit_id(self, rev: str) -> str:
        """The commit `rev` names.

        Raises:
            RevisionError: there is no such commit.
        """
        args = ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]
        found = self._repo.git(*args, check=False).decode().strip()
        if not found:
            raise RevisionError(["git", *args], 1, f"fatal: {rev}: no such commit in {self.root}")
        return found

    # ---- reading -------------------------------------------------------------------------

    def metadata(self, path: str | os.PathLike[str], rev: str | None = "HEAD") -> Metadata:
        """The metadata Git stores for the tracked checkpoint `path` at `rev`.

        Raises:
            RevisionError: no such revision.
            GitThetaError: `path` is not in it.
            NotMetadataError: the file there is not a checkpoint git-theta tracks.
        """
        rel = self._relative(path)
        spec = f":{rel}" if rev is None else f"{self.commit_id(rev)}:{rel}"
        blob = self._repo.read_current_blob(spec)
        if blob is None:
            raise GitThetaError(f"{rel}: not in {'the index' if rev is None else rev}")
        return md.decode(blob, source=f"{rev or 'index'}:{rel}")

    def parameters(
        self, path: str | os.PathLike[str], rev: str | None = "HEAD"
    ) -> dict[str, ParamInfo]:
        """What each parameter of `path` at `rev` is, reading no tensor."""
        meta = self.metadata(path, rev)
        return {name: ParamInfo.of(name, e) for name, e in meta.params.items()}

    def tracked(self, rev: str | None = "HEAD") -> list[str]:
        """The paths of the checkpoints git-theta tracks in `rev`."""
        from git_theta.commands.ls_files import list_checkpoints

        return [path for path, _ in list_checkpoints(self._repo, rev)]

    def load(
        self,
        path: str | os.PathLike[str],
        rev: str | None = "HEAD",
        *,
        framework: Framework = "numpy",
    ) -> Checkpoint:
        """The checkpoint `path` at `rev`, read lazily (each parameter's objects when it is
        looked up, fetched from the remote if absent). The work tree is not touched.

        Example:
            >>> weights = Repository().load("model.safetensors", "v1.0", framework="torch")
            >>> model.load_state_dict(weights.to_dict())
        """
        rel = self._relative(path)
        commit = None if rev is None else self.commit_id(rev)
        meta = self.metadata(rel, commit)
        return Checkpoint(rel, commit, meta, framework, lambda n, e: self._tensor(rel, n, e))

    def _tensor(self, path: str, name: str, entry: ParamEntry) -> RawTensor:
        return self._ctx.load_param(entry, path, name)


class Repository(_Reading):
    """A Git repository whose checkpoints git-theta tracks.

    Args:
        path: any directory inside the work tree (default: the current directory).

    Raises:
        GitThetaError: `path` is not inside a Git repository.

    Paths of tracked checkpoints are given from the work tree root (as in `REV:PATH`);
    revisions are anything `git rev-parse` takes (commit, branch, tag, `HEAD~2`), and None
    means the index. Use it as a context manager, or call `close()`, to end the git
    processes it keeps.
    """

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -------------------------------------------------------------------------

    def stage(
        self,
        state_dict: Mapping[str, Any],
        path: str | os.PathLike[str],
        *,
        update_type: str | None = None,
        rank: int | None = None,
    ) -> str:
        """Store `state_dict` as the new version of the tracked `path` and put its metadata
        in the index (as `git add` of that file would), without writing the work tree.
        Returns the metadata blob's id.

        Unchanged tensors are not stored again; changed ones as the update policy decides
        (`update_type` and `rank` as for `git theta add`; default: from configuration).

        Raises:
            ConfigError: `path` is not tracked by git-theta, or its format cannot be told.
            CheckpointError: a value is not a tensor, or of a dtype the format cannot hold.
        """
        policy = UpdatePolicy(kind=update_type, rank=rank).validate() if update_type else None
        return stage_state_dict(self._ctx, state_dict, self._relative(path), policy)

    def save(
        self,
        state_dict: Mapping[str, Any],
        path: str | os.PathLike[str],
        *,
        message: str,
        update_type: str | None = None,
        rank: int | None = None,
        tag: str | None = None,
        checkout: bool = False,
    ) -> str:
        """Commit `state_dict` as the new version of the tracked checkpoint `path` on the
        current branch; returns the commit id.

        Only `path` is committed: changes staged in the index stay staged and out of the
        commit. The commit is made with Git's plumbing, so commit hooks do not run (as with
        git-theta 0.2's `save_to_git`). The work tree file is written only with
        `checkout=True`; otherwise `git status` shows it modified (or deleted) until
        `git checkout -- PATH`.

        Args:
            state_dict: name -> numpy array or torch tensor (a PyTorch checkpoint may also
                hold nested dicts and non-tensor values, as `torch.save` writes them).
            path: the tracked path, from the work tree root.
            message: the commit message.
            update_type, rank: how changed tensors are stored, as for `git theta add`.
            tag: a lightweight tag to put on the new commit.
            checkout: also write the checkpoint to the work tree.

        Example:
            >>> for step in range(1, steps + 1):
            ...     train_step()
            ...     if step % 1000 == 0:
            ...         repo.save(model.state_dict(), "model.safetensors", message=f"step {step}")
        """
        rel = self._relative(path)
        blob = self.stage(state_dict, rel, update_type=update_type, rank=rank)
        commit = commit_path(self._repo, rel, blob, message)
        if tag is not None:
            self._repo.git("tag", tag, commit)
        if checkout:
            write_worktree(self._ctx, rel, blob)
        return commit

    # ---- comparing and merging -----------------------------------------------------------

    def diff(
        self,
        old: str | None = "HEAD",
        new: str | None = None,
        paths: Sequence[str] = (),
        *,
        params: Sequence[str] = (),
        unchanged: bool = False,
    ) -> dict[str, Any]:
        """Per parameter, what changed in tracked checkpoints between `old` and `new`: the
        document `git theta diff --format json` prints (docs/diff.md).

        `new=None` compares with the index; `old=None` (and `new=None`) compares the index
        with the work tree. `paths` limit the checkpoints, `params` (globs) the parameters.

        Raises:
            RevisionError: no such revision.
            MissingObjectError: tensors that changed are not in the local store.
        """
        ends = (old, None if old is None else self.commit_id(old))
        return diff_document(
            self._repo,
            ends,
            (new, None if new is None else self.commit_id(new)),
            paths,
            params=params,
            unchanged=unchanged,
        )

    def fsck(self, revs: Sequence[str] = (), *, decode: bool = False) -> FsckReport:
        """Verify the objects the repository needs, as `git theta fsck [REV...]` does (every
        object read once, sha256 and header checked; `decode` also decodes each): the report
        lists each bad object with a place that uses it (`problem.line()`).

        Raises:
            RevisionError: a revision does not exist.
        """
        from git_theta.store.fsck import fsck

        return fsck(self._repo, self._ctx.store, list(revs), decode=decode)

    def du(self, revs: Sequence[str] = ()) -> dict[str, Any]:
        """What the object store holds, per tracked checkpoint and version: the document
        `git theta du --format json` prints (README, "The store: fsck, prune, du")."""
        from git_theta.store.du import disk_usage

        return disk_usage(self._repo, self._ctx.store, list(revs))

    def merge(
        self,
        models: Sequence[str],
        *,
        strategy: str,
        output: str | os.PathLike[str],
        base: str | None = None,
        options: Sequence[str] = (),
        params: Sequence[str] = (),
        stage: bool = False,
    ) -> Path:
        """Merge checkpoints with a merge strategy (the engine the merge driver uses), write
        the result to `output` (a file path, relative to the current directory) and return
        its path.

        Each model (and `base`) is a checkpoint file, `REV:PATH`, or a bare revision meaning
        `output`'s path in that revision; the first is "ours", the last "theirs". With a
        base, a parameter that every model changing it changed the same way is taken as is;
        the others go to the strategy. `options` are the strategy's `KEY=VALUE` options (as
        `git theta merge-models -X` takes them); `params` globs limit what it merges.
        With a base and a task-vector strategy, every parameter a model changed goes to the
        strategy and one model suffices (negation; git_theta/merges/edits.py). `stage=True`
        puts the merged metadata itself in the index (a stacked low-rank result stays
        low-rank in the commit), `output` being a tracked path in the work tree.

        Raises:
            ConfigError: fewer than two models, or a bad strategy or option.
            MergeError: a model cannot be read, or conflicts remain that the strategy
                cannot resolve.
        """
        return merge_checkpoints(
            self._ctx,
            models,
            strategy=strategy,
            output=output,
            base=base,
            options=options,
            params=params,
            stage=stage,
        )
