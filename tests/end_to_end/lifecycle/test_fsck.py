"""`git theta fsck`: one line per bad object naming object, commit, path and parameter;
`--repair` restores from a real Git LFS server on 127.0.0.1."""

from __future__ import annotations

import hashlib

from git_theta import metadata as md
from testing.store_files import flip_byte, object_path


def _entries(scratch, rev: str) -> dict[str, md.ParamEntry]:
    return md.decode(scratch.git("show", f"{rev}:model.safetensors").encode()).params


def _fsck(scratch, *args: str):
    proc = scratch.env.theta("fsck", *args, cwd=scratch.repo, check=False)
    return proc.returncode, proc.stdout.decode().splitlines(), proc.stderr.decode()


def test_intact_repository_passes_with_a_summary(scratch):
    scratch.commit("v1")
    scratch.commit("v2", scratch.edited("embed.weight"))
    code, lines, err = _fsck(scratch)
    assert (code, err) == (0, "")
    count = len(md.decode(scratch.git("show", "HEAD~1:model.safetensors").encode()).objects()) + 1
    assert lines == [f"fsck: {count} object(s) (0.0 MiB) of 2 version(s) verified; no problems."]


def test_flipped_byte_and_missing_object_are_one_line_each(scratch):
    scratch.commit("v1")
    scratch.commit("v2", scratch.edited("embed.weight", "norm.scale"))
    head = scratch.git("rev-parse", "--short=7", "HEAD").strip()
    entries = _entries(scratch, "HEAD")
    corrupt = entries["layers.0.mlp.weight"].object.oid
    missing = entries["norm.scale"].object.oid
    flip_byte(object_path(scratch.repo, corrupt))
    object_path(scratch.repo, missing).unlink()

    code, lines, err = _fsck(scratch)
    assert code == 1 and err == ""
    corrupt_line = next(line for line in lines if line.startswith("corrupt"))
    missing_line = f"missing object {missing} (commit {head}, model.safetensors: norm.scale)"
    assert sorted(lines[:2]) == sorted([missing_line, corrupt_line])
    # Where the flipped bit lands decides which check notices first; the line names it.
    assert corrupt_line.startswith(
        f"corrupt object {corrupt} (commit {head}, model.safetensors: layers.0.mlp.weight): "
    )
    assert len(lines) == 3 and lines[2].startswith("fsck: 2 bad object(s) of")
    code, decoded, _ = _fsck(scratch, "--decode")  # decoding finds the same two (its reason)
    assert code == 1 and len(decoded) == 3
    assert sorted(line.split(": its")[0] for line in decoded[:2]) == sorted(
        line.split(": its")[0] for line in lines[:2]
    )
    # Naming the revision checks only its checkpoint: v1 shares the corrupt object, not the
    # missing one (norm.scale changed).
    code, lines, _ = _fsck(scratch, "HEAD~1")
    assert code == 1
    assert [line.split()[:3] for line in lines[:-1]] == [["corrupt", "object", corrupt]]


def test_repair_restores_from_the_lfs_server(pushed):
    scratch = pushed
    v2 = scratch.path.read_bytes()
    entries = _entries(scratch, "HEAD")
    corrupt = entries["embed.weight"].object.oid
    missing = entries["layers.1.attn.weight"].object.oid
    flip_byte(object_path(scratch.repo, corrupt))
    damaged = object_path(scratch.repo, corrupt).read_bytes()
    object_path(scratch.repo, missing).unlink()

    code, lines, err = _fsck(scratch, "--repair")
    assert (code, err) == (0, "")
    assert lines[-1] == "fsck: repaired 2 of 2 bad object(s)."
    bad = scratch.repo / ".git" / "theta" / "bad" / corrupt
    assert f"moved corrupt object {corrupt} to {bad}" in lines
    assert bad.read_bytes() == damaged  # kept as evidence, out of the way
    for oid in (corrupt, missing):
        assert hashlib.sha256(object_path(scratch.repo, oid).read_bytes()).hexdigest() == oid
    assert _fsck(scratch)[0] == 0
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == v2


def test_repair_without_a_remote_says_what_is_left(scratch):
    scratch.commit("v1")
    oid = _entries(scratch, "HEAD")["norm.scale"].object.oid
    object_path(scratch.repo, oid).unlink()
    code, lines, _ = _fsck(scratch, "--repair")
    assert code == 1
    assert lines[0].startswith(f"missing object {oid} (commit ")
    assert lines[1].startswith("fsck: this repository has no remote")
    assert lines[2] == f"not repaired: {lines[0]}"
    assert lines[-1] == "fsck: repaired 0 of 1 bad object(s)."


def test_unknown_revision_is_one_line(scratch):
    scratch.commit("v1")
    code, lines, err = _fsck(scratch, "no-such-branch")
    assert code == 1 and lines == []
    assert err.startswith("git-theta: error:") and "no-such-branch" in err
    assert len(err.strip().splitlines()) == 1
