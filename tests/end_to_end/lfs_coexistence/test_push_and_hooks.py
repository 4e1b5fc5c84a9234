"""`git push` in a mixed repository uploads both kinds of objects, and git-theta puts its
pre-push hook back after Git LFS overwrites it."""

from __future__ import annotations

import pytest

from git_theta.git import lfs
from testing.checkpoints import random_params, write_safetensors
from testing.mixed_repo import Mixed, assert_every_version, both_installed, lfs_oid, store_snapshot

RESTORED = {
    # Git LFS's hook was chained before (lfs-first): the same one is there, ours goes back.
    "lfs-first": "git-theta: restored the pre-push hook that Git LFS had replaced; "
    "it runs `git lfs pre-push` too. ",
    # Ours came first: Git LFS's hook is now chained behind it.
    "theta-first": "git-theta: restored the pre-push hook that Git LFS had replaced; "
    "Git LFS's runs first, as pre-push.legacy. ",
}
MEANWHILE = (
    "Pushes made meanwhile sent no checkpoint objects: `git theta push --all` sends what the "
    "remote lacks\n"
)


def _commit_new_version(m: Mixed, seed: int) -> tuple[bytes, set[str]]:
    """Change both files and commit; the new LFS oid and the store's new objects."""
    before = set(store_snapshot(m.repo))
    blob = bytes([seed]) * 2048
    (m.repo / "data.bin").write_bytes(blob)
    write_safetensors(m.repo / "model.safetensors", random_params({"w": ("F32", (8, 8))}, seed))
    m.git("add", "data.bin", "model.safetensors")
    m.git("commit", "-q", "-m", f"new {seed}")
    new = {name.rsplit("/", 1)[-1] for name in set(store_snapshot(m.repo)) - before}
    assert new
    return blob, new


def test_git_push_uploads_both_kinds_and_a_fresh_clone_checks_out_every_version(
    connected: Mixed, tmp_path
):
    m = connected
    trace = m.env.root / "trace.txt"
    m.env.run(["git", "push", "-q", "origin", "main"], cwd=m.repo, env={"GIT_TRACE": str(trace)})
    # Git LFS's pre-push ran once: from the chained hook (lfs-first) or from ours.
    assert trace.read_text().count("trace: exec: git-lfs pre-push origin") == 1
    stored = m.stored()
    assert {lfs_oid(v.bin) for v in m.versions} <= stored
    assert {name.rsplit("/", 1)[-1] for name in store_snapshot(m.repo)} <= stored

    other = both_installed(tmp_path / "other")
    clone = m.clone(other)
    assert_every_version(other, clone, m.versions)
    # Git LFS's filter put its hook in the fresh clone first; git-theta's first download
    # chained it rather than leaving the clone unable to upload checkpoints.
    hooks = clone / ".git" / "hooks"
    assert "git-theta pre-push" in (hooks / "pre-push").read_text()
    assert lfs.is_lfs_hook((hooks / "pre-push.legacy").read_text())

    # And the clone's own pushes upload both kinds.
    clone_side = Mixed(other, clone, m.order, [], m.server, m.lfs_name, m.bare)
    blob, new = _commit_new_version(clone_side, seed=7)
    other.git("push", "-q", "origin", "main", cwd=clone)
    assert {lfs_oid(blob), *new} <= m.stored()


@pytest.mark.parametrize(
    "command",
    [("track", "*.safetensors"), ("install", "--local"), ("push",), ("ls-files",)],
    ids=lambda c: " ".join(c),
)
def test_git_theta_restores_its_hook_after_git_lfs_update_force(connected: Mixed, command):
    m = connected
    m.run("git", "lfs", "update", "--force")
    assert lfs.is_lfs_hook(m.hook.read_text())

    proc = m.env.theta(*command, cwd=m.repo)
    if command[0] in ("track", "install"):  # these install the hook themselves, and say so
        expected = (
            "The existing pre-push hook was kept as pre-push.legacy and runs first.\n"
            if m.order == "theta-first"
            else "Git LFS had replaced git-theta's pre-push hook; restored it "
            "(it runs Git LFS's pre-push too).\n"
        )
        assert expected in proc.stdout.decode()
    else:
        assert proc.stderr.decode() == RESTORED[m.order] + MEANWHILE
    assert "git-theta pre-push" in m.hook.read_text()
    assert lfs.is_lfs_hook((m.hook.parent / "pre-push.legacy").read_text())
    # Nothing to say the next time.
    assert m.env.theta("ls-files", cwd=m.repo).stderr == b""


def test_a_push_while_git_lfs_hook_is_in_place_is_repaired_by_push_all(connected: Mixed):
    m = connected
    m.git("push", "-q", "origin", "main")
    m.run("git", "lfs", "install", "--force")
    assert lfs.is_lfs_hook(m.hook.read_text())
    # Pushed with Git LFS's hook alone: the LFS file goes up, the checkpoint's objects do not.
    blob, new = _commit_new_version(m, seed=3)
    m.git("push", "-q", "origin", "main")
    assert lfs_oid(blob) in m.stored() and not new & m.stored()
    # As the message says: the hook is back, and push --all sends what the server lacks.
    proc = m.env.theta("push", "--all", cwd=m.repo)
    assert proc.stderr.decode() == RESTORED[m.order] + MEANWHILE
    assert new <= m.stored()
    blob, new = _commit_new_version(m, seed=4)
    m.git("push", "-q", "origin", "main")
    assert {lfs_oid(blob), *new} <= m.stored()


def test_a_users_hook_in_our_place_is_reported_with_the_command_to_run(mixed: Mixed):
    m = mixed
    user_hook = "#!/bin/sh\nexit 0\n"
    m.hook.write_text(user_hook)
    proc = m.env.theta("ls-files", cwd=m.repo)
    assert proc.stderr.decode() == (
        f"git-theta: {m.hook} is not git-theta's, so `git push` uploads no checkpoint "
        "objects; run `git theta install --local` to chain it\n"
    )
    assert m.hook.read_text() == user_hook  # a user's hook is never moved unasked
    if m.order == "lfs-first":  # pre-push.legacy holds Git LFS's hook already
        proc = m.env.theta("install", "--local", cwd=m.repo, check=False)
        assert proc.returncode == 1
        assert "already exists; merge them into" in proc.stderr.decode()
    else:
        m.env.theta("install", "--local", cwd=m.repo)
        assert (m.hook.parent / "pre-push.legacy").read_text() == user_hook
        assert m.env.theta("ls-files", cwd=m.repo).stderr == b""


def test_git_lfs_install_after_us_leaves_our_hook_and_push_still_uploads_lfs(
    connected: Mixed,
):
    """Git LFS's hook never ran here (theta-first: `git lfs install` refused to replace ours;
    lfs-first: we drop the chained one); our hook runs `git lfs pre-push` itself."""
    m = connected
    (m.hook.parent / "pre-push.legacy").unlink(missing_ok=True)
    proc = m.run("git", "lfs", "install", check=False)
    assert proc.returncode == 2 and "Hook already exists: pre-push" in proc.stderr.decode()
    assert "git-theta pre-push" in m.hook.read_text()
    m.git("push", "-q", "origin", "main")
    assert {lfs_oid(v.bin) for v in m.versions} <= m.stored()
    assert {name.rsplit("/", 1)[-1] for name in store_snapshot(m.repo)} <= m.stored()
