"""Delta chains travel like any object: push sends each version's XOR object, a fresh clone
rebuilds the end of the chain from the objects its entries name (no intermediate work tree)."""

from __future__ import annotations

import json

import numpy as np

from testing.gitenv import store_objects
from testing.training import train_step


def _delta_oids(meta: dict) -> set[str]:
    return {
        u["object"]["oid"]
        for e in meta["params"].values()
        for u in e.get("updates", [])
        if u["type"] == "delta"
    }


def test_a_pushed_delta_chain_clones_and_checks_out_bit_for_bit(scratch, origin):
    origin.connect(scratch.repo)  # auto, the default: nothing configured
    # One tensor above choice.MIN_UPDATE_BYTES (smaller ones stay dense).
    big = np.random.default_rng(7).normal(0, 0.02, (256, 128)).astype(np.float32)
    versions = [scratch.commit("v1", dict(scratch.params, **{"big.weight": ("F32", big)}))]
    scratch.git("push", "-q", "-u", "origin", "main")
    params = scratch.params
    for step in range(2, 5):
        params = train_step(params, 1e-3, seed=step)
        versions.append(scratch.commit(f"v{step}", params))
    meta = json.loads(scratch.git("show", "HEAD:model.safetensors"))
    stored_as = {u["type"] for e in meta["params"].values() for u in e.get("updates", [])}
    assert "delta" in stored_as
    before = origin.stored()
    scratch.git("push", "-q")
    # Every delta of every pushed version went up (three versions' worth of chain links).
    assert _delta_oids(meta) <= origin.stored() - before

    clone = origin.clone("clone")
    assert (clone / "model.safetensors").read_bytes() == versions[-1]
    assert scratch.env.git("status", "--porcelain", cwd=clone) == ""
    # An earlier version of the chain, checked out in the clone, is exact too.
    scratch.env.git("checkout", "-q", "HEAD~2", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == versions[1]
    assert store_objects(clone) <= origin.stored()
