"""Rewrite history from Git LFS to git-theta, as `git lfs migrate import` rewrites it to LFS.

`git fast-export --no-data` lists every commit of the refs, with each file as the id of its
blob. A file matching the pattern whose blob is an LFS pointer is replaced by the git-theta
metadata of the checkpoint the pointer names (cleaned once per distinct pointer: the tensors
go to the store once, shared by every version that holds them); each `.gitattributes` has its
`PATTERN filter=lfs ...` line replaced by git-theta's. `git fast-import` writes the new
commits under a temporary namespace; only when it has succeeded are the original refs moved,
in one `git update-ref` transaction. An interruption before that leaves them untouched.
Annotated tags are made again on the rewritten commits, with their name, tagger and message
(git_theta/git/fast_export.py). Patterns match as git matches them (git/wildmatch.py), and
paths with spaces, quotes or non-ASCII bytes are converted like any other.
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from git_theta.errors import ConfigError, GitThetaError
from git_theta.git.attributes import THETA_ATTRIBUTES, split_pattern
from git_theta.git.fast_export import EXPORT_ARGS, TEMP_NAMESPACE, convert, write_tag
from git_theta.git.repo import Repo
from git_theta.git.wildmatch import attribute_pattern_matches
from git_theta.metadata import MAX_OBJECT_SIZE
from git_theta.pause_point import pause_point

__all__ = [
    "MigrationReport",
    "import_history",
    "lfs_object_path",
    "parse_pointer",
    "survey_history",
]

# An LFS pointer is a few lines of text; git-lfs refuses anything longer as a pointer.
MAX_POINTER_BYTES = 1024
_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>[0-9]+)\n"
)

Cleaner = Callable[[BinaryIO, str], bytes]


@dataclass
class MigrationReport:
    """What a migration converted."""

    commits: int = 0
    converted_versions: int = 0  # distinct pointer blobs turned into metadata
    lfs_bytes: int = 0  # sum of the LFS objects those pointers name
    refs: list[str] = field(default_factory=list)


def parse_pointer(blob: bytes) -> tuple[str, int] | None:
    """(oid, size) of a Git LFS pointer, or None when `blob` is not one."""
    if len(blob) > MAX_POINTER_BYTES:
        return None
    m = _POINTER.fullmatch(blob)
    if m is None or len(m["size"]) > 16 or int(m["size"]) > MAX_OBJECT_SIZE:
        return None  # a size no object can have is no pointer we could resolve
    return m["oid"].decode("ascii"), int(m["size"])


def lfs_object_path(repo: Repo, oid: str) -> Path:
    """Where Git LFS keeps object `oid` (a validated 64-hex sha256) in this repository."""
    return repo.common_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def rewrite_attributes(text: bytes, patterns: Sequence[str]) -> bytes:
    """`.gitattributes` with each `PATTERN ... filter=lfs ...` line for one of `patterns`
    (unquoted, as split_pattern reads them) replaced by git-theta's line; the pattern keeps
    the spelling the line gave it (quoted or not)."""
    out = []
    for line in text.splitlines(keepends=True):
        parsed = split_pattern(line.decode("utf-8", "surrogateescape"))
        if parsed and parsed[0] in patterns and "filter=lfs" in parsed[2]:
            ending = b"\r\n" if line.endswith(b"\r\n") else b"\n"
            line = f"{parsed[1]} {THETA_ATTRIBUTES}".encode("utf-8", "surrogateescape") + ending
        out.append(line)
    return b"".join(out)


class _Rewriter:
    """Maps old blobs to new ones; with `clean` None (a dry run) it only records the
    pointers it would convert, in `pointers`."""

    def __init__(self, repo: Repo, patterns: Sequence[str], clean: Cleaner | None) -> None:
        self.repo, self.patterns, self.clean = repo, patterns, clean
        self.blobs: dict[tuple[str, str], str] = {}  # (old blob, kind) -> new blob
        self.report = MigrationReport()
        self.commit = "?"
        self.pointers: dict[str, int] = {}  # LFS oid -> size, every distinct one seen
        # LFS oid -> `commit C: path` where it is first needed, for objects not held locally
        self.missing: dict[str, str] = {}

    def _write_blob(self, data: bytes) -> str:
        return self.repo.git("hash-object", "-w", "--stdin", input=data).decode().strip()

    def file(self, sha: str, path: str) -> str:
        if path == ".gitattributes" or path.endswith("/.gitattributes"):
            key = (sha, "attributes")
            if key not in self.blobs:
                old = self.repo.read_blob(sha) or b""
                new = rewrite_attributes(old, self.patterns)
                self.blobs[key] = sha if new == old else self._write_blob(new)
            return self.blobs[key]
        if not any(attribute_pattern_matches(p, path) for p in self.patterns):
            return sha
        key = (sha, path)
        if key in self.blobs:
            return self.blobs[key]
        blob = self.repo.read_blob(sha) or b""
        pointer = parse_pointer(blob)
        if pointer is None:
            self.blobs[key] = sha
            return sha
        oid, size = pointer
        obj = lfs_object_path(self.repo, oid)
        if self.clean is None:
            self.pointers[oid] = size
            if not obj.is_file():
                self.missing.setdefault(oid, f"commit {self.commit}: {path}")
            self.blobs[key] = sha
            return sha
        if not obj.is_file():
            raise GitThetaError(
                f"commit {self.commit}: {path}: Git LFS object {oid} is not in "
                f"{obj.parent.parent.parent}; run `git lfs fetch --all` first"
            )
        with open(obj, "rb") as f:
            metadata = self.clean(f, path)
        self.report.converted_versions += 1
        self.report.lfs_bytes += size
        self.blobs[key] = self._write_blob(metadata)
        return self.blobs[key]


# Testing only: the rewrite's pause point falls when this commit starts, so fast-import has
# taken the ones before it.
_PAUSE_AT_COMMIT = 3


def _on_commit(rewriter: _Rewriter, importer: BinaryIO | None = None) -> Callable[[str], None]:
    def seen(original: str) -> None:
        rewriter.commit = original
        rewriter.report.commits += 1
        if importer is not None and rewriter.report.commits == _PAUSE_AT_COMMIT:
            pause_point("rewrite", importer)

    return seen


def _annotated_tags(repo: Repo, old: dict[str, str]) -> set[str]:
    """The refs of `old` that are annotated tags.

    Raises:
        ConfigError: a tag of something other than a commit (a tag of a tag, of a tree).
    """
    out = set()
    for ref, oid in old.items():
        if repo.git("cat-file", "-t", oid).strip() != b"tag":
            continue
        header = repo.git("cat-file", "tag", oid).split(b"\n", 2)[1]
        if header != b"type commit":
            raise ConfigError(
                f"{ref}: an annotated tag of a {header[5:].decode()}, not of a commit; "
                "migration rewrites tags of commits only"
            )
        out.add(ref)
    return out


def import_history(
    repo: Repo, patterns: Sequence[str], refs: Sequence[str], clean: Cleaner
) -> MigrationReport:
    """Rewrite `refs` (full ref names) so matching LFS files become git-theta metadata.

    Raises:
        GitThetaError: an LFS object is missing locally (naming commit, path and object);
            the original refs are then untouched.
        ConfigError: a tag among the refs tags something other than a commit.
    """
    old = {r: repo.git("rev-parse", "--verify", r).decode().strip() for r in refs}
    annotated = _annotated_tags(repo, old)
    rewriter = _Rewriter(repo, patterns, clean)
    _drop_temp_refs(repo)  # a killed run's: they would block a ref renamed since (a/b after a)
    export = subprocess.Popen(
        ["git", *EXPORT_ARGS, *refs],
        cwd=repo.worktree, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    importer = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--force"],
        cwd=repo.worktree, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert export.stdout is not None and importer.stdin is not None
    try:
        tags = convert(
            export.stdout,  # type: ignore[arg-type]
            importer.stdin,  # type: ignore[arg-type]
            on_file=rewriter.file,
            on_commit=_on_commit(rewriter, importer.stdin),  # type: ignore[arg-type]
        )
        importer.stdin.close()
    except BaseException:
        export.kill()
        importer.kill()
        export.wait()
        importer.wait()
        _drop_temp_refs(repo)
        raise
    export_err = export.stderr.read() if export.stderr else b""
    import_err = importer.stderr.read() if importer.stderr else b""
    if export.wait() != 0 or importer.wait() != 0:
        _drop_temp_refs(repo)
        raise GitThetaError(
            "history rewrite failed; refs untouched: "
            + (export_err or import_err).decode("utf-8", "replace").strip()
        )
    by_ref = {tag.ref: tag for tag in tags}
    updates = []
    for ref, before in old.items():
        new = repo.git("rev-parse", "--verify", TEMP_NAMESPACE + ref).decode().strip()
        if ref in annotated:
            new = write_tag(repo, by_ref[ref], new)
        updates.append(f"update {ref} {new} {before}\n")
    pause_point("refs")
    repo.git("update-ref", "--stdin", input="".join(updates).encode())
    _drop_temp_refs(repo)
    rewriter.report.refs = list(refs)
    return rewriter.report


def survey_history(
    repo: Repo, patterns: Sequence[str], refs: Sequence[str]
) -> tuple[MigrationReport, dict[str, int], dict[str, str]]:
    """What import_history would convert, without writing anything: the report, every
    distinct LFS object (oid -> size) and those not held locally (oid -> `commit C: path`
    where it is first needed)."""
    rewriter = _Rewriter(repo, patterns, None)
    export = subprocess.Popen(
        ["git", *EXPORT_ARGS, *refs],
        cwd=repo.worktree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert export.stdout is not None
    try:
        convert(
            export.stdout,  # type: ignore[arg-type]
            io.BytesIO(),
            on_file=rewriter.file,
            on_commit=_on_commit(rewriter),
        )
    finally:
        export.kill()
        export.wait()
    rewriter.report.converted_versions = len(rewriter.pointers)
    rewriter.report.lfs_bytes = sum(rewriter.pointers.values())
    return rewriter.report, rewriter.pointers, rewriter.missing


def _drop_temp_refs(repo: Repo) -> None:
    listed = repo.git("for-each-ref", "--format=%(refname)", TEMP_NAMESPACE).decode().split()
    if listed:
        repo.git("update-ref", "--stdin", input="".join(f"delete {r}\n" for r in listed).encode())
