"""Rewriting a `git fast-export --no-data` stream on its way to `git fast-import`, for history
rewrites (git_theta/git/lfs_migrate.py).

Every ref goes to a temporary namespace, so nothing the user has moves until the caller has
checked the whole import and updates the refs in one transaction. A file's blob id may be
replaced (the caller decides, per path). Annotated tags are not handed to fast-import, which
would write `refs/tags/NAME` itself: the stream's tag becomes a temporary ref to the rewritten
commit, and `write_tag` makes the new tag object afterwards with the same name, tagger and
message (a signature is stripped: it signed the old commit).

Stream format: https://git-scm.com/docs/git-fast-import
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from git_theta.git.patch import unquote_path
from git_theta.git.repo import Repo

__all__ = ["EXPORT_ARGS", "TEMP_NAMESPACE", "AnnotatedTag", "convert", "write_tag"]

TEMP_NAMESPACE = "refs/theta-migrate/"
EXPORT_ARGS = (
    "fast-export", "--no-data", "--show-original-ids", "--signed-tags=strip", "--reencode=no",
)  # fmt: skip

# path -> new blob id, given the old one; called with the path unquoted.
FileHook = Callable[[str, str], str]


@dataclass(frozen=True)
class AnnotatedTag:
    """An annotated tag of the stream: `refs/tags/<name>`, its tagger line (without the
    `tagger ` key; None for old tags without one) and its message."""

    name: str
    tagger: bytes | None
    message: bytes

    @property
    def ref(self) -> str:
        return f"refs/tags/{self.name}"


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    while line := stream.readline():
        yield line


def _read_tag(name: bytes, src: BinaryIO, dst: BinaryIO) -> AnnotatedTag:
    """The rest of a `tag` command; writes the temporary ref that stands in for it."""
    tagger: bytes | None = None
    for line in _lines(src):
        if line.startswith(b"from "):
            temp = TEMP_NAMESPACE.encode() + b"refs/tags/" + name
            # The empty line after the tag's message ends this command.
            dst.write(b"reset " + temp + b"\n" + line)
        elif line.startswith(b"tagger "):
            tagger = line[7:].rstrip(b"\n")
        elif line.startswith(b"data "):
            message = src.read(int(line[5:]))
            text = name.decode("utf-8", "surrogateescape")
            return AnnotatedTag(text, tagger, message)
    raise ValueError(f"fast-export stream ended inside tag {name!r}")


def convert(
    src: BinaryIO, dst: BinaryIO, *, on_file: FileHook, on_commit: Callable[[str], None]
) -> list[AnnotatedTag]:
    """Copy a fast-export stream from `src` to `dst`, refs moved into TEMP_NAMESPACE and each
    file's blob id replaced by `on_file(old id, path)`; `on_commit(original id)` is told of
    each commit before its files. Returns the annotated tags, left for `write_tag`."""
    tags: list[AnnotatedTag] = []
    for line in _lines(src):
        if line.startswith(b"data "):
            dst.write(line + src.read(int(line[5:])))
        elif line.startswith((b"commit ", b"reset ")):
            verb, ref = line.rstrip(b"\n").split(b" ", 1)
            dst.write(verb + b" " + TEMP_NAMESPACE.encode() + ref + b"\n")
        elif line.startswith(b"original-oid "):
            on_commit(line[13:].strip().decode())  # fast-import does not take the line
        elif line.startswith(b"M "):
            _, mode, sha, raw_path = line.rstrip(b"\n").split(b" ", 3)
            if mode != b"160000":  # a submodule's commit is no file
                # fast-export C-quotes a path with a space, a quote or a non-ASCII byte.
                path = unquote_path(raw_path.decode("utf-8", "surrogateescape"))
                sha = on_file(sha.decode(), path).encode()
            dst.write(b" ".join((b"M", mode, sha, raw_path)) + b"\n")
        elif line.startswith(b"tag "):
            tags.append(_read_tag(line[4:].rstrip(b"\n"), src, dst))
        else:
            dst.write(line)
    return tags


def write_tag(repo: Repo, tag: AnnotatedTag, commit: str) -> str:
    """A tag object like `tag`'s, pointing at `commit`, written to the object database;
    returns its id."""
    body = f"object {commit}\ntype commit\ntag {tag.name}\n".encode("utf-8", "surrogateescape")
    if tag.tagger is not None:
        body += b"tagger " + tag.tagger + b"\n"
    body += b"\n" + tag.message
    return repo.git("hash-object", "-t", "tag", "-w", "--stdin", input=body).decode().strip()
