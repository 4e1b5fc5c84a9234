"""git-theta: version-control machine-learning checkpoints with git, one parameter at a time.

The library API behind the `git-theta` command; see README.md for the workflow. Names are
imported on first use, so `git-theta` commands that need little start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FilterSession",
    "Format",
    "GitThetaError",
    "Metadata",
    "ObjectRef",
    "ObjectStore",
    "ParamEntry",
    "RawTensor",
    "all_formats",
    "get_format",
]

_HOMES = {
    "FilterSession": "git_theta.filters",
    "Format": "git_theta.formats",
    "GitThetaError": "git_theta.errors",
    "Metadata": "git_theta.metadata",
    "ObjectRef": "git_theta.metadata",
    "ObjectStore": "git_theta.store",
    "ParamEntry": "git_theta.metadata",
    "RawTensor": "git_theta.tensor",
    "all_formats": "git_theta.formats",
    "get_format": "git_theta.formats",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'git_theta' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
