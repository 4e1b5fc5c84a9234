"""The steps of an update policy that check what the user supplied against the file being
cleaned: a PEFT adapter, git-theta 0.2's side files, a sparse mask. `Updater`
(git_theta/updates/policy.py) runs them; they live here to keep each module one concept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from git_theta.errors import CheckpointError
from git_theta.metadata import ObjectRef, ParamEntry
from git_theta.tensor import RawTensor, content_hash
from git_theta.updates import get_update_type
from git_theta.updates.rebuild import rebuild

if TYPE_CHECKING:
    from git_theta.updates.peft import AdapterUpdate
    from git_theta.updates.policy import CleanReport, UpdatePolicy

__all__ = ["MERGED_KEY", "AdapterSteps", "read_masks", "without_merged"]

# In a float update record: the content hash of the merged tensor the user added, where its
# bytes differ from git-theta's rebuild (policy.py re-exports it).
MERGED_KEY = "merged"


def without_merged(record: Mapping[str, Any]) -> dict[str, Any]:
    """An update record without the hash of the merge it was added with (the same update,
    whatever program merged it)."""
    return {k: v for k, v in record.items() if k != MERGED_KEY}


class AdapterSteps:
    """The adapter, side-file and mask steps of `Updater` (a mixin: Updater provides the
    attributes and the methods declared here)."""

    policy: UpdatePolicy
    report: CleanReport
    _path: str

    def load(self, ref: ObjectRef) -> RawTensor:
        raise NotImplementedError

    def write(self, tensor: RawTensor) -> ObjectRef:
        raise NotImplementedError

    def same_as(self, after: RawTensor, prev: ParamEntry, digest: str | None = None) -> bool:
        raise NotImplementedError

    def _finish(
        self, name: str, entry: ParamEntry, rebuilt: RawTensor, kept: RawTensor, kind: str
    ) -> ParamEntry:
        raise NotImplementedError

    def _check_mask(self, name: str, before: RawTensor, after: RawTensor, mask: RawTensor) -> None:
        """Entries outside the mask's nonzero positions must be unchanged."""
        import numpy as np

        from git_theta.updates.sparse import changed_indices, elements

        where = f"{self._path}: parameter {name}"
        if math.prod(mask.shape) != math.prod(after.shape):
            raise CheckpointError(
                f"{where}: the mask in {self.policy.path} has shape {list(mask.shape)}, the "
                f"parameter {list(after.shape)}"
            )
        trained = elements(mask) != 0
        outside = int(np.count_nonzero(~trained[changed_indices(before, after)]))
        if outside:
            raise CheckpointError(
                f"{where}: {outside} entries changed outside the mask in {self.policy.path}"
            )

    def _from_sparse_side(
        self, name: str, after: RawTensor, prev: ParamEntry | None, update: AdapterUpdate
    ) -> ParamEntry:
        """git-theta 0.2's sparse side file: the committed version plus its CSR change, stored
        as an exact sparse update (git_theta/updates/side_file.py)."""
        import numpy as np

        from git_theta.compute import from_compute, to_compute

        where = f"{self._path}: parameter {name}"
        if prev is None:
            raise CheckpointError(f"{where}: no committed version to add the side file's change to")
        shape = tuple(np.frombuffer(update.tensors["shape"].data, "<i8").tolist())
        if (after.dtype, after.shape) != (prev.dtype, prev.shape) or shape not in (
            prev.shape,
            (math.prod(prev.shape),),
        ):
            raise CheckpointError(
                f"{where}: the side file's change of shape {list(shape)} does not fit "
                f"{prev.dtype} {list(prev.shape)}"
            )
        before = rebuild(prev, self.load)
        values = np.array(to_compute(before), copy=True).reshape(-1)
        idx = np.frombuffer(update.tensors["indices"].data, "<i8")
        values[idx] += np.frombuffer(update.tensors["values"].data, "<f8").astype(values.dtype)
        expected = from_compute(values.reshape(prev.shape), prev.dtype)
        if bytes(after.data) == bytes(before.data):
            self.report.materialize.append(name)
        elif bytes(after.data) != bytes(expected.data):
            raise CheckpointError(
                f"{where}: the file holds neither the committed version nor the committed "
                "version plus the side file's change"
            )
        inferred = get_update_type("sparse").infer(before, expected, self.write, {})
        if inferred is None:
            raise CheckpointError(f"{where}: {prev.dtype} cannot take a sparse update")
        entry = ParamEntry(
            prev.dtype, prev.shape, "", prev.object, (*prev.updates, dict(inferred.record))
        )
        return self._finish(name, entry, expected, expected, "sparse")

    def _from_adapter(
        self, name: str, after: RawTensor, prev: ParamEntry | None, update: AdapterUpdate
    ) -> ParamEntry:
        from git_theta.updates import numeric

        where = f"{self._path}: parameter {name}"
        if prev is None:
            raise CheckpointError(
                f"{where}: the adapter updates it but no committed version of it exists to "
                "apply the update to"
            )
        if (after.dtype, after.shape) != (prev.dtype, prev.shape):
            raise CheckpointError(
                f"{where}: {after.dtype} {list(after.shape)} in the file but {prev.dtype} "
                f"{list(prev.shape)} committed; an adapter cannot change dtype or shape"
            )
        if not numeric.numeric(prev.dtype):
            raise CheckpointError(f"{where}: {prev.dtype} parameters cannot take an adapter")
        records = update.records(prev.shape, self.write, tolerance=self.policy.tolerance)
        if not records:
            raise CheckpointError(
                f"{where}: the adapter's {update.describe_shape()} for {update.module!r} do not "
                f"fit a {list(prev.shape)} parameter"
            )
        if prev.updates and without_merged(prev.updates[-1]) in records:
            # Added before (objects are content-addressed, so the record is the same).
            if content_hash(after.data) == prev.hash or self.same_as(after, prev):
                return prev
            raise CheckpointError(
                f"{where}: this adapter is applied already and the file holds further changes; "
                "add those on their own first"
            )
        before = rebuild(prev, self.load)
        kind = get_update_type(update.kind)
        outcomes = [(record, kind.apply(before, record, self.load)) for record in records]
        # The entry's hash is always that of the rebuild, so a checkout re-cleans by hash alone;
        # the user's own merge, if its bytes differ, is kept as the record's `merged` hash.
        if bytes(after.data) == bytes(before.data):
            # The file still holds the committed base: the merged weights are written out.
            record, rebuilt = outcomes[0]
            self.report.materialize.append(name)
            entry = ParamEntry(prev.dtype, prev.shape, "", prev.object, (*prev.updates, record))
            return self._finish(name, entry, rebuilt, rebuilt, update.kind)
        for record, rebuilt in outcomes:
            if bytes(after.data) == bytes(rebuilt.data):
                break
            slack = kind.slack(before, record, self.load)
            if slack is not None and numeric.within(after, rebuilt, slack):
                break
        else:
            worst = min(numeric.max_abs_difference(after, r) for _, r in outcomes)
            raise CheckpointError(
                f"{where}: the file holds neither the committed version nor the committed "
                f"version plus the adapter's update of {update.module!r} (max |difference| "
                f"{worst:.3g}); was the adapter trained on the committed base?"
            )
        entry = ParamEntry(prev.dtype, prev.shape, "", prev.object, (*prev.updates, record))
        return self._finish(name, entry, rebuilt, after, update.kind)


def read_masks(path: Path) -> dict[str, RawTensor]:
    """Parameter name -> mask from a safetensors file: a FISH mask (bool/int, nonzero where
    trained) or a diff-pruning delta (nonzero entries mark the trained positions)."""
    from git_theta.formats import get_format

    if not path.is_file():
        raise CheckpointError(f"{path}: a sparse update's --update-path is a safetensors file")
    masks = get_format("safetensors").load(path)
    if not masks:
        raise CheckpointError(f"{path}: the mask file holds no tensors")
    return masks
