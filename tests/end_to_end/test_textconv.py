"""`git show` and `git log -p` without --ext-diff: one line per parameter, through textconv."""

from __future__ import annotations

from git_theta import metadata as md


def _hash12(scratch, rev: str, name: str) -> str:
    meta = md.decode(scratch.git("show", "--no-textconv", f"{rev}:model.safetensors").encode())
    return meta.params[name].hash.split(":")[1][:12]


def test_show_and_log_print_changed_parameters(scratch):
    scratch.commit("v1")
    params = scratch.edited("norm.scale")
    del params["step"]
    scratch.commit("v2", params)
    old, new = _hash12(scratch, "HEAD~1", "norm.scale"), _hash12(scratch, "HEAD", "norm.scale")
    shown = scratch.git("show", "HEAD", "--", "model.safetensors")
    changed = [line for line in shown.splitlines() if line[:1] in "+-" and line[1:2] != line[:1]]
    assert changed == [
        "-7 parameters",
        "+6 parameters",
        f"-norm.scale\tF32\t32\t{old}",
        f"-step\tI64\tscalar\t{_hash12(scratch, 'HEAD~1', 'step')}",
        f"+norm.scale\tF32\t32\t{new}",
    ]
    logged = scratch.git("log", "-p", "-1", "--format=", "--", "model.safetensors")
    assert f"+norm.scale\tF32\t32\t{new}" in logged.splitlines()
