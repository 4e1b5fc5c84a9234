"""Content-addressed storage of tensors in Git LFS's local layout."""

from git_theta.store.objects import ObjectStore
from git_theta.store.serialize import decode_object, encode_object, encode_paged, read_object

__all__ = ["ObjectStore", "decode_object", "encode_object", "encode_paged", "read_object"]
