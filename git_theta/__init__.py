"""git-theta: version-control machine-learning checkpoints with git, one parameter at a time.

The library API behind the `git-theta` command; see README.md for the workflow.
"""

from git_theta.errors import GitThetaError
from git_theta.filters import FilterSession
from git_theta.formats import Format, all_formats, get_format
from git_theta.metadata import Metadata, ObjectRef, ParamEntry
from git_theta.store import ObjectStore
from git_theta.tensor import RawTensor

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
