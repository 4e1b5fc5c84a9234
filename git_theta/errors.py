"""Errors git-theta raises on purpose, each a kind the caller can branch on.

GitThetaError                 anything the user can act on; exit 1, one line, no traceback
├── CheckpointError           a checkpoint file is truncated, corrupt or unsupported
│   └── UnknownFormatError    no format recognises the file and none was named
├── MetadataError             a metadata file claims to be ours but does not parse
│   └── NotMetadataError      the bytes are not git-theta metadata at all (pass them through)
├── StoreError                the local object store cannot give what was asked
│   ├── MissingObjectError    an object a parameter needs is not in the store
│   ├── CorruptObjectError    an object's bytes do not match its oid or its header
│   ├── StoreWriteError       the store cannot be written (full disk, read-only, not a directory)
│   └── ObjectTooLargeError   an object declares more bytes than theta.maxObjectBytes allows
├── TransferError             moving objects to or from a remote failed; names remote and objects
│   └── CredentialsError      the remote refused the credentials, or none could be had
├── GitError                  a git subprocess failed; shows command, code and stderr
│   └── RevisionError         a revision the user named does not exist; git's own message
├── ConfigError               an option, attribute or config value is invalid
├── FileWriteError            a checkpoint file cannot be written (full disk, read-only, ...)
├── MergeError                parameters cannot be merged as asked (shape/dtype mismatch, ...)
└── ProtocolError             git's filter protocol was broken; ends the filter process
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

__all__ = [
    "CheckpointError",
    "ConfigError",
    "CorruptObjectError",
    "CredentialsError",
    "FileWriteError",
    "GitError",
    "GitThetaError",
    "MergeError",
    "MetadataError",
    "MissingObjectError",
    "NotMetadataError",
    "ObjectTooLargeError",
    "ProtocolError",
    "RevisionError",
    "StoreError",
    "StoreWriteError",
    "TransferError",
    "UnknownFormatError",
    "in_context",
]


class GitThetaError(Exception):
    """Base of every error meant for the user; its message is one actionable line."""


class CheckpointError(GitThetaError):
    """A checkpoint is truncated, corrupt, lies in its header, or holds what we refuse to load."""


class UnknownFormatError(CheckpointError):
    """No registered format recognises the file, and no `theta-format` override names one."""


class MetadataError(GitThetaError):
    """Bytes that start like git-theta metadata but are malformed or of an unknown version."""


class NotMetadataError(MetadataError):
    """The bytes are not git-theta metadata; callers pass such content through untouched."""


class StoreError(GitThetaError):
    """The local object store cannot serve a request."""


class MissingObjectError(StoreError):
    """Objects that parameters need are absent from the local store.

    Attributes:
        missing: the oids that are absent, in the order they were needed.
    """

    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


class CorruptObjectError(StoreError):
    """An object's bytes do not hash to its oid, or its header and payload disagree."""


class StoreWriteError(StoreError):
    """The object store cannot take a write: the disk is full, the file system is read-only,
    or `theta.storage` names something that is not a usable directory.

    Attributes:
        path: the store directory (or the configured path) that failed.
        errno: the OS error number when an OS call failed (ENOSPC, EROFS, ...), else None.
    """

    def __init__(self, message: str, *, path: object = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno


class ObjectTooLargeError(StoreError):
    """An object declares a tensor larger than `theta.maxObjectBytes` (or than memory can
    hold); refused before any of it is allocated."""


class TransferError(GitThetaError):
    """Objects could not be moved to or from a remote.

    The message is one line naming the remote, the reason and the first objects (with the
    parameters they belong to, when the caller knows them).

    Attributes:
        remote: the remote as the user named it, with its LFS endpoint.
        failures: oid -> why that object failed (empty for a failure before any object).
    """

    def __init__(
        self, message: str, *, remote: str = "", failures: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.remote = remote
        self.failures = dict(failures or {})


class CredentialsError(TransferError):
    """The remote answered 401/403 to the credentials `git credential fill` gave, or none came."""


class GitError(GitThetaError):
    """A git command failed; the message carries the command, its exit code and its stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.cmd = tuple(args)
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"`{' '.join(args)}` exited with {returncode}: {detail}")


class RevisionError(GitError):
    """A revision or range the user named does not resolve; the message is git's own line
    (`bad revision 'nope'`), without the command around it."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(args, returncode, stderr)
        fatal = [
            ln.removeprefix("fatal: ") for ln in stderr.splitlines() if ln.startswith("fatal: ")
        ]
        self.message = fatal[0] if fatal else super().__str__()

    def __str__(self) -> str:
        return self.message


class ConfigError(GitThetaError):
    """A configuration value, attribute or command-line option is invalid."""


class FileWriteError(GitThetaError):
    """A checkpoint file git-theta writes itself (the direct checkout, `git theta checkout`,
    the API) cannot be written: the disk is full, the directory is read-only, ..."""


class MergeError(GitThetaError):
    """A merge cannot be done as asked: the sides of a parameter disagree in shape or dtype,
    a strategy cannot cast back to the parameter's dtype, or conflicts remain unresolved."""


class ProtocolError(GitThetaError):
    """Git's long-running filter protocol was violated; the process cannot go on serving."""


E = TypeVar("E", bound=GitThetaError)


def in_context(exc: E, where: str, *, advice: str = "") -> E:
    """`exc` again, its message prefixed with `where: ` (and `; advice` appended), with every
    attribute kept (`MissingObjectError.missing`, `TransferError.failures`, ...), so callers
    up the stack can still branch on them."""
    message = f"{where}: {exc}" + (f"; {advice}" if advice else "")
    new = type(exc).__new__(type(exc))
    new.__dict__.update(exc.__dict__)
    new.args = (message,)
    if "message" in new.__dict__:  # RevisionError prints its own attribute
        new.__dict__["message"] = message
    return new
