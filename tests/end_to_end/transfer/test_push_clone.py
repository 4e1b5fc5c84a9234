"""Push, clone and pull through a real Git LFS server (giftless on 127.0.0.1)."""

from __future__ import annotations

from git_theta.git.repo import Repo
from git_theta.transfer import objects_in
from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv, store_objects


def _objects_of(repo, *revs: str) -> set[str]:
    return {ref.oid for ref in objects_in.history(Repo(repo), list(revs)).refs}


def test_push_then_fresh_clone_is_byte_identical(scratch, origin):
    origin.connect(scratch.repo)
    v1 = scratch.commit("v1")
    scratch.git("push", "-q", "-u", "origin", "main")
    assert origin.stored() == store_objects(scratch.repo) == _objects_of(scratch.repo, "HEAD")

    clone = origin.clone("clone")
    assert (clone / "model.safetensors").read_bytes() == v1
    assert store_objects(clone) == origin.stored()
    # The clone's first download set up the pre-push hook, so its pushes upload too.
    assert "git-theta pre-push" in (clone / ".git" / "hooks" / "pre-push").read_text()


def test_incremental_pull_downloads_only_new_objects(scratch, origin, proxy):
    origin.connect(scratch.repo)
    scratch.commit("v1")
    scratch.git("push", "-q", "-u", "origin", "main")
    clone = origin.clone("clone")
    # The clone talks to the server through the counting proxy.
    scratch.env.git(
        "config", "lfs.url", origin.lfs_url.replace(origin.server.url, proxy.url), cwd=clone
    )

    before = origin.stored()
    v2 = scratch.commit("v2", scratch.edited("norm.scale", "layers.0.attn.bias"))
    scratch.git("push", "-q")
    new = origin.stored() - before
    assert len(new) == 2  # two tensors changed; nothing else was uploaded

    scratch.env.git("pull", "-q", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == v2
    assert proxy.count("/objects/storage/", "GET") == len(new)
    assert proxy.count("/objects/batch", "POST") == 1  # one batch for the whole checkpoint


def test_merge_commit_and_rebased_history_push(scratch, origin):
    origin.connect(scratch.repo)
    scratch.commit("v1")
    base = dict(scratch.params)
    scratch.git("push", "-q", "-u", "origin", "main")
    scratch.git("switch", "-q", "-c", "side")
    scratch.commit("side edits embed", scratch.edited("embed.weight"))
    scratch.git("switch", "-q", "main")
    scratch.params = base
    scratch.commit("main edits norm", scratch.edited("norm.scale"))
    scratch.git("merge", "-q", "--no-edit", "side")
    merged = scratch.path.read_bytes()
    scratch.git("push", "-q", "origin", "main")
    assert _objects_of(scratch.repo, "main") <= origin.stored()

    # Rebase a topic branch onto main and force-push it: the rewritten commits' objects go up.
    scratch.git("switch", "-q", "-c", "topic", "main~1")
    scratch.commit("topic edits step", scratch.edited("step", delta=3))
    scratch.git("push", "-q", "origin", "topic")
    scratch.git("rebase", "-q", "main")
    rebased = scratch.path.read_bytes()
    scratch.git("push", "-q", "--force", "origin", "topic")
    assert _objects_of(scratch.repo, "main", "topic") <= origin.stored()

    clone = origin.clone("clone")
    assert (clone / "model.safetensors").read_bytes() == merged
    scratch.env.git("switch", "-q", "topic", cwd=clone)
    assert (clone / "model.safetensors").read_bytes() == rebased


def test_push_from_a_fresh_clone_uploads_its_new_commits(scratch, origin):
    origin.connect(scratch.repo)
    scratch.commit("v1")
    scratch.git("push", "-q", "-u", "origin", "main")
    clone = origin.clone("clone")
    params = dict(scratch.params)
    dtype, array = params["embed.weight"]
    params["embed.weight"] = (dtype, array * 2)
    v2 = write_safetensors(clone / "model.safetensors", params, metadata={"format": "pt"})
    scratch.env.git("commit", "-q", "-am", "v2 from the clone", cwd=clone)
    scratch.env.git("push", "-q", cwd=clone)
    assert _objects_of(clone, "HEAD") <= origin.stored()
    scratch.git("pull", "-q")
    assert scratch.path.read_bytes() == v2


def test_explicit_push_and_fetch(scratch, origin):
    origin.connect(scratch.repo)
    v1 = scratch.commit("v1")
    # Push the ref without the hook, as a mirror job might, then the objects explicitly.
    scratch.git("push", "-q", "--no-verify", "origin", "main")
    assert origin.stored() == set()
    out = scratch.env.theta("push", "origin", "main", "--all", cwd=scratch.repo).stdout.decode()
    assert out.startswith(f"Uploaded {len(store_objects(scratch.repo))} object(s)")
    assert origin.stored() == store_objects(scratch.repo)

    bare_env = GitEnv(scratch.env.root / "ci", install=False)
    cache = bare_env.root / "cache"
    bare_env.git("clone", "-q", "--no-checkout", str(origin.bare), str(cache), cwd=bare_env.root)
    out = bare_env.theta("fetch", "origin", "main", cwd=cache).stdout.decode()
    assert out.startswith(f"Downloaded {len(origin.stored())} object(s)")
    assert store_objects(cache) == origin.stored()
    again = bare_env.theta("fetch", cwd=cache).stdout.decode()
    assert again.startswith("Downloaded 0 object(s)")
    bare_env.run(["git-theta", "install", "--local"], cwd=cache)
    bare_env.git("checkout", "-q", "main", cwd=cache)
    assert (cache / "model.safetensors").read_bytes() == v1
