"""Dense updates: the chain continues from a whole new tensor of the same dtype and shape."""

from __future__ import annotations

import numpy as np

from git_theta.tensor import RawTensor
from git_theta.updates import get_update_type

DENSE = get_update_type("dense")


def test_apply_is_the_new_tensor(write, load):
    before = RawTensor.from_numpy(np.zeros((2, 3), "<f2"))
    new = RawTensor.from_numpy(np.arange(6, dtype="<f2").reshape(2, 3))

    out = DENSE.apply(before, {"type": "dense", "object": write(new).to_json()}, load)

    assert (out.dtype, out.shape, bytes(out.data)) == ("F16", (2, 3), bytes(new.data))


def test_dense_is_exact_and_infers_nothing(write, load):
    before = RawTensor.from_numpy(np.zeros(2, "<f4"))
    record = {"type": "dense", "object": write(before).to_json()}
    assert DENSE.slack(before, record, load) is None
    assert DENSE.infer(before, before, write, {}) is None
