"""git-theta: version-control machine-learning checkpoints with git, one parameter at a time.

The public API (docs/api.md): `Repository` loads, saves, diffs and merges tracked
checkpoints; `save_to_git`/`load_from_git` keep git-theta 0.2's scripts working; the errors
are the `GitThetaError` tree; `Metadata`, `ParamEntry`, `ObjectRef`, `RawTensor` and the
format registry are the types those hand out and plugins implement. Names are imported on
first use, so `git-theta` commands that need little start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from git_theta._version import __version__ as __version__

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "CorruptObjectError",
    "CredentialsError",
    "Format",
    "GitError",
    "GitThetaError",
    "MergeError",
    "Metadata",
    "MetadataError",
    "MissingObjectError",
    "NotMetadataError",
    "ObjectRef",
    "ParamEntry",
    "ParamInfo",
    "ProtocolError",
    "RawTensor",
    "Repository",
    "RevisionError",
    "StoreError",
    "TransferError",
    "UnknownFormatError",
    "all_formats",
    "get_format",
    "load_from_git",
    "save_to_git",
]

_HOMES = {
    "Checkpoint": "git_theta.api",
    "CheckpointError": "git_theta.errors",
    "ConfigError": "git_theta.errors",
    "CorruptObjectError": "git_theta.errors",
    "CredentialsError": "git_theta.errors",
    "Format": "git_theta.formats",
    "GitError": "git_theta.errors",
    "GitThetaError": "git_theta.errors",
    "MergeError": "git_theta.errors",
    "Metadata": "git_theta.metadata",
    "MetadataError": "git_theta.errors",
    "MissingObjectError": "git_theta.errors",
    "NotMetadataError": "git_theta.errors",
    "ObjectRef": "git_theta.metadata",
    "ParamEntry": "git_theta.metadata",
    "ParamInfo": "git_theta.api",
    "ProtocolError": "git_theta.errors",
    "RawTensor": "git_theta.tensor",
    "Repository": "git_theta.api",
    "RevisionError": "git_theta.errors",
    "StoreError": "git_theta.errors",
    "TransferError": "git_theta.errors",
    "UnknownFormatError": "git_theta.errors",
    "all_formats": "git_theta.formats",
    "get_format": "git_theta.formats",
    "load_from_git": "git_theta.api",
    "save_to_git": "git_theta.api",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'git_theta' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
