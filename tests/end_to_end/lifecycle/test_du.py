"""`git theta du`: its numbers against the files on disk."""

from __future__ import annotations

import json

from git_theta import metadata as md
from testing.checkpoints import write_safetensors
from testing.gitenv import store_objects
from testing.store_files import age_store, object_path


def _objects(scratch, rev: str) -> set[str]:
    blob = scratch.git("show", f"{rev}:model.safetensors").encode()
    return {ref.oid for ref in md.decode(blob).objects()}


def _du(scratch, *args: str) -> dict:
    proc = scratch.env.theta("du", "--format", "json", *args, cwd=scratch.repo)
    return json.loads(proc.stdout)


def test_numbers_match_the_files(scratch):
    v1 = scratch.commit("v1")
    base = dict(scratch.params)
    v2 = scratch.commit("v2", scratch.edited("embed.weight", "norm.scale"))
    # A second checkpoint sharing all but one tensor with v1 (and the layout with both).
    scratch.params = base
    copy = scratch.edited("layers.1.attn.weight")
    scratch.params = dict(base)
    write_safetensors(scratch.repo / "copy.safetensors", copy, metadata={"format": "pt"})
    scratch.git("add", "copy.safetensors")
    scratch.git("commit", "-q", "-m", "copy")
    size = {
        oid: object_path(scratch.repo, oid).stat().st_size for oid in store_objects(scratch.repo)
    }
    o1, o2 = _objects(scratch, "HEAD~2"), _objects(scratch, "HEAD")

    report = _du(scratch)
    assert report["version"] == 1
    rows = {(r["path"], r["commit"][:7]): r for r in report["versions"]}
    head = scratch.git("rev-parse", "--short=7", "HEAD").strip()
    first = scratch.git("rev-parse", "--short=7", "HEAD~2").strip()
    # A version is named by the first commit git's walk (newest first) finds it in.
    assert len(rows) == 3
    v2_row = rows[("model.safetensors", head)]
    v1_row = rows[("model.safetensors", first)]
    copy_row = rows[("copy.safetensors", head)]
    assert v1_row["raw_bytes"] == len(v1) and v2_row["raw_bytes"] == len(v2)
    assert v1_row["stored_bytes"] == sum(size[o] for o in o1)
    assert v2_row["stored_bytes"] == sum(size[o] for o in o2)
    oc = {
        ref.oid
        for ref in md.decode(scratch.git("show", "HEAD:copy.safetensors").encode()).objects()
    }
    assert len(oc - o1) == 1
    assert v1_row["shared_bytes"] == sum(size[o] for o in o1 & (o2 | oc))
    assert v2_row["shared_bytes"] == sum(size[o] for o in o2 & (o1 | oc))
    assert copy_row["stored_bytes"] == sum(size[o] for o in oc)
    assert copy_row["shared_bytes"] == sum(size[o] for o in oc & (o1 | o2))
    assert all(r["missing_objects"] == 0 for r in rows.values())

    checkpoints = {r["path"]: r for r in report["checkpoints"]}
    model = checkpoints["model.safetensors"]
    assert (model["versions"], model["raw_bytes"]) == (2, len(v1) + len(v2))
    assert model["stored_bytes"] == sum(size[o] for o in o1 | o2)
    assert model["shared_bytes"] == sum(size[o] for o in (o1 | o2) & oc)
    assert report["total"] == {
        "objects": len(size),
        "stored_bytes": sum(size.values()),
        "referenced_objects": len(size),
        "referenced_bytes": sum(size.values()),
    }
    assert report["prune"]["objects"] == 0


def test_prune_figure_is_what_prune_removes(scratch):
    scratch.commit("v1")
    scratch.commit("v2", scratch.edited("embed.weight"))
    gone = _objects(scratch, "HEAD") - _objects(scratch, "HEAD~1")
    scratch.git("reset", "-q", "--hard", "HEAD~1")
    scratch.git("reflog", "expire", "--expire=now", "--all")
    scratch.git("gc", "-q", "--prune=now")
    age_store(scratch.repo)
    nbytes = sum(object_path(scratch.repo, oid).stat().st_size for oid in gone)

    report = _du(scratch)
    assert report["prune"]["objects"] == len(gone) == 1
    assert report["prune"]["bytes"] == nbytes
    assert report["total"]["stored_bytes"] - report["total"]["referenced_bytes"] == nbytes
    text = scratch.env.theta("du", cwd=scratch.repo).stdout.decode()
    assert "model.safetensors (1 version(s))" in text
    assert f"prune would reclaim 1 object(s) ({nbytes / 1024:.1f} KiB)" in text


def test_revisions_limit_the_versions_and_a_bad_one_is_one_line(scratch):
    scratch.commit("v1")
    scratch.commit("v2", scratch.edited("embed.weight"))
    assert len(_du(scratch, "HEAD~1")["versions"]) == 1
    assert len(_du(scratch, "HEAD")["versions"]) == 2
    proc = scratch.env.theta("du", "nope", cwd=scratch.repo, check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode() == (
        "git-theta: error: ambiguous argument 'nope': unknown revision or path not in the "
        "working tree.\n"
    )
