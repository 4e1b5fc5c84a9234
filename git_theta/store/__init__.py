"""Content-addressed storage of tensors, in our own place in the git dir (location.py)."""

from git_theta.store.location import open_store, store_root
from git_theta.store.objects import ObjectStore
from git_theta.store.serialize import decode_object, encode_object, encode_paged, read_object

__all__ = [
    "ObjectStore",
    "decode_object",
    "encode_object",
    "encode_paged",
    "open_store",
    "read_object",
    "store_root",
]
