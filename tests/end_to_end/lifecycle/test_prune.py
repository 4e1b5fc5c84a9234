"""`git theta prune`: reclaims what nothing references; keeps everything Git's rules protect."""

from __future__ import annotations

import os
import time

from git_theta import metadata as md
from testing.checkpoints import write_safetensors
from testing.gitenv import store_objects
from testing.lfs_server import free_port
from testing.store_files import age_store, object_path


def _objects(scratch, rev: str) -> set[str]:
    blob = scratch.git("show", f"{rev}:model.safetensors").encode()
    return {ref.oid for ref in md.decode(blob).objects()}


def _prune(scratch, *args: str) -> list[str]:
    proc = scratch.env.theta("prune", *args, cwd=scratch.repo)
    assert proc.stderr == b""
    return proc.stdout.decode().splitlines()


def _forget_last_commit(scratch, *, gc: bool = True) -> None:
    scratch.git("reset", "-q", "--hard", "HEAD~1")
    scratch.git("reflog", "expire", "--expire=now", "--all")
    if gc:
        scratch.git("gc", "-q", "--prune=now")


def test_reset_and_reflog_expire_reclaims_exactly_the_unreachable_version(scratch):
    v1 = scratch.commit("v1")
    v2 = scratch.commit("v2", scratch.edited("embed.weight"))
    scratch.commit("v3", scratch.edited("norm.scale", "layers.1.attn.weight"))
    kept = _objects(scratch, "HEAD~1") | _objects(scratch, "HEAD~2")
    gone = _objects(scratch, "HEAD") - kept
    assert len(gone) == 2
    _forget_last_commit(scratch)
    age_store(scratch.repo)
    before = store_objects(scratch.repo)
    sizes = sum(object_path(scratch.repo, oid).stat().st_size for oid in gone)

    dry = _prune(scratch, "--dry-run")
    assert store_objects(scratch.repo) == before  # nothing deleted
    assert sorted(line.split()[2] for line in dry[:-1]) == sorted(gone)
    assert dry[-1].startswith("prune: would remove 2 object(s)")

    out = _prune(scratch)
    assert out[-1].startswith(f"prune: removed 2 object(s) ({sizes / (1 << 20):.1f} MiB)")
    assert store_objects(scratch.repo) == before - gone == kept
    assert _prune(scratch)[-1].startswith("prune: removed 0 object(s)")
    # Every reachable version still checks out byte-identical.
    scratch.path.unlink()
    scratch.git("checkout", "--", "model.safetensors")
    assert scratch.path.read_bytes() == v2
    scratch.git("checkout", "-q", "HEAD~1")
    assert scratch.path.read_bytes() == v1
    assert scratch.env.theta("fsck", cwd=scratch.repo).returncode == 0


def test_objects_written_recently_are_kept(scratch):
    scratch.commit("v1")
    scratch.commit("v2", scratch.edited("embed.weight"))
    _forget_last_commit(scratch)
    before = store_objects(scratch.repo)
    # v2's file, kept by its `git add` (git_theta/cleaned.py), was replaced by the reset: its
    # kept copy may go too; the objects are what this test is about.
    out = [line for line in _prune(scratch) if "kept copies" not in line]
    assert out[0].startswith("prune: removed 0 object(s)")
    assert out[1].startswith("prune: kept 1 unreferenced object(s) written in the last 24 hours")
    assert store_objects(scratch.repo) == before


def test_index_stash_and_recent_unreachable_commit_are_kept(scratch):
    scratch.commit("v1")
    base = dict(scratch.params)
    scratch.write(scratch.edited("embed.weight"))
    scratch.git("stash", "-q")
    stashed = {
        ref.oid
        for ref in md.decode(scratch.git("show", "stash@{0}:model.safetensors").encode()).objects()
    }
    scratch.params = base
    scratch.commit("recent", scratch.edited("norm.scale"))
    recent = _objects(scratch, "HEAD")
    _forget_last_commit(scratch, gc=False)  # the commit stays in git's object database
    scratch.params = base
    scratch.write(scratch.edited("layers.0.attn.bias"))
    scratch.git("add", "model.safetensors")
    staged = _objects(scratch, ":0")
    assert len(stashed | recent | staged) > len(_objects(scratch, "HEAD")) + 2
    age_store(scratch.repo)

    out = _prune(scratch)
    assert out[-1].startswith("prune: removed 0 object(s)")
    assert stashed | recent | staged <= store_objects(scratch.repo)
    # ORIG_HEAD (left by the reset) holds the commit whatever its age ...
    assert _prune(scratch, "--recent", "0")[-1].startswith("prune: removed 0 object(s)")
    # ... and once nothing does, outside the grace period it is fair game; the rest stays.
    scratch.git("update-ref", "-d", "ORIG_HEAD")
    out = _prune(scratch, "--recent", "0")
    assert out[-1].startswith("prune: removed 1 object(s)")
    assert store_objects(scratch.repo) == stashed | staged | _objects(scratch, "HEAD")


def test_conflict_stages_of_a_merge_in_progress_are_kept(scratch):
    scratch.commit("v1")
    base = dict(scratch.params)
    scratch.git("switch", "-q", "-c", "side")
    scratch.commit("side", scratch.edited("norm.scale", delta=2.0))
    theirs = _objects(scratch, "HEAD")
    scratch.git("switch", "-q", "main")
    scratch.params = base
    scratch.commit("main", scratch.edited("norm.scale", delta=3.0))
    proc = scratch.env.run(["git", "merge", "side"], cwd=scratch.repo, check=False)
    assert proc.returncode != 0  # both sides changed norm.scale: a conflict, left for the user
    assert (scratch.repo / ".git" / "MERGE_HEAD").exists()
    # Delete the branch and every reflog: only MERGE_HEAD and the index's stage 3 hold theirs.
    scratch.git("branch", "-D", "side")
    scratch.git("reflog", "expire", "--expire=now", "--all")
    age_store(scratch.repo)
    assert _prune(scratch, "--recent", "0")[-1].startswith("prune: removed 0 object(s)")
    assert theirs <= store_objects(scratch.repo)
    # Once the merge is aborted nothing holds the side's own object any more.
    scratch.git("merge", "--abort")
    scratch.git("reflog", "expire", "--expire=now", "--all")
    scratch.git("gc", "-q", "--prune=now")
    assert _prune(scratch, "--recent", "0")[-1].startswith("prune: removed 1 object(s)")
    assert not theirs <= store_objects(scratch.repo)


def test_stale_temp_files_go_and_live_ones_stay(scratch):
    scratch.commit("v1")
    tmp = scratch.repo / ".git" / "theta" / "tmp"
    tmp.mkdir(exist_ok=True)
    stale, live = tmp / "object-killed", tmp / "object-writing"
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"y" * 10)
    past = time.time() - 7200
    os.utime(stale, (past, past))
    out = _prune(scratch)
    assert out[-1].endswith("and 1 stale temp file(s) (0.0 MiB) from " + str(tmp.parent) + ".")
    assert not stale.exists() and live.exists()


def test_a_shared_store_is_refused(scratch):
    scratch.commit("v1")
    shared = scratch.env.root / "shared-store"
    shared.mkdir()
    scratch.git("config", "theta.storage", str(shared))
    proc = scratch.env.theta("prune", cwd=scratch.repo, check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode() == (
        f"git-theta: error: {shared} is set by theta.storage and may be shared by other "
        "repositories, whose references prune cannot see; nothing was deleted\n"
    )


def test_verify_remote_prunes_old_versions_the_server_holds(pushed):
    scratch = pushed  # v1 and v2, ten and nine days old, pushed to giftless
    v1 = _objects(scratch, "HEAD~1")
    v2 = _objects(scratch, "HEAD")
    scratch.commit("v3, unpushed", scratch.edited("layers.0.attn.bias"))
    v3 = _objects(scratch, "HEAD")
    age_store(scratch.repo)
    # By default every reachable version stays.
    assert _prune(scratch)[-1].startswith("prune: removed 0 object(s)")

    out = _prune(scratch, "--verify-remote")
    # v1 and v2 are old and on the server; v3 is HEAD, unpushed and recent.
    gone = (v1 | v2) - v3
    assert out[-1].startswith(f"prune: removed {len(gone)} object(s)")
    assert store_objects(scratch.repo) == v3
    # The old versions come back from the server on checkout, byte-identical.
    scratch.git("checkout", "-q", "HEAD~2")
    blob = md.decode(scratch.git("show", "HEAD:model.safetensors").encode())
    assert {ref.oid for ref in blob.objects()} == v1 <= store_objects(scratch.repo)
    assert scratch.env.theta("fsck", cwd=scratch.repo).returncode == 0


def test_verify_remote_keeps_unpushed_and_recent_commits(pushed):
    scratch = pushed
    v2 = _objects(scratch, "HEAD")
    scratch.git("switch", "-q", "-c", "local")
    scratch.commit("local, unpushed", scratch.edited("layers.0.attn.bias"))
    local = _objects(scratch, "HEAD")
    scratch.git("switch", "-q", "main")
    scratch.git("branch", "-D", "local")  # only the reflog holds it now
    age_store(scratch.repo)
    _prune(scratch, "--verify-remote", "--recent", "0")
    # main's tip is current; the unpushed commit is kept through its reflog entry.
    assert v2 | local <= store_objects(scratch.repo)


def test_verify_remote_without_a_remote_is_an_error(scratch):
    scratch.commit("v1")
    proc = scratch.env.theta("prune", "--verify-remote", cwd=scratch.repo, check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode().startswith("git-theta: error: this repository has no remote")


def test_the_index_of_another_work_tree_is_kept(scratch):
    scratch.commit("v1")
    other = scratch.env.root / "other"
    scratch.git("worktree", "add", "-q", "--detach", str(other))
    write_safetensors(other / "model.safetensors", scratch.edited("embed.weight", "step"))
    scratch.env.git("add", "model.safetensors", cwd=other)
    staged = {
        ref.oid
        for ref in md.decode(
            scratch.env.git("show", ":model.safetensors", cwd=other).encode()
        ).objects()
    }
    age_store(scratch.repo)
    assert _prune(scratch, "--recent", "0")[-1].startswith("prune: removed 0 object(s)")
    assert staged <= store_objects(scratch.repo)
    scratch.env.git("reset", "-q", "--hard", cwd=other)
    assert not _prune(scratch, "--recent", "0")[-1].startswith("prune: removed 0 object(s)")


def test_verify_remote_with_the_server_down_deletes_nothing(pushed):
    scratch = pushed
    scratch.git("config", "lfs.url", f"http://127.0.0.1:{free_port()}/org/gone.git/info/lfs")
    age_store(scratch.repo)
    before = store_objects(scratch.repo)
    proc = scratch.env.theta("prune", "--verify-remote", cwd=scratch.repo, check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    err = proc.stderr.decode()
    assert err.startswith("git-theta: error: origin (") and err.endswith("nothing was deleted\n")
    assert len(err.splitlines()) == 1
    assert store_objects(scratch.repo) == before
