"""Git LFS's own commands, run in a mixed repository, leave git-theta's data whole."""

from __future__ import annotations

from pathlib import Path

from testing.mixed_repo import Mixed, assert_every_version, lfs_oid, store_snapshot


def _lfs_objects(repo: Path) -> set[str]:
    root = repo / ".git" / "lfs" / "objects"
    return {p.name for p in root.rglob("*") if p.is_file()}


def test_every_lfs_command_keeps_every_version_of_both_sides(connected: Mixed):
    """After each command: git-theta's store byte for byte as it was, the work tree clean and
    as committed. After each group of commands (hooks and config; LFS's own store; checks),
    every committed version of both files checked out for real. Checkouts start a filter
    process per side, so they are what this test spends its time on."""
    m = connected
    before = store_snapshot(m.repo)
    assert before  # the checkpoint's objects are there to lose
    bins = {lfs_oid(v.bin) for v in m.versions}
    assert _lfs_objects(m.repo) == bins
    head = m.versions[-1]

    def lfs(*args: str, codes: tuple[int, ...] = (0,)) -> str:
        proc = m.run("git", "lfs", *args, check=False)
        out = (proc.stdout + proc.stderr).decode()
        assert proc.returncode in codes, (args, proc.returncode, out)
        assert store_snapshot(m.repo) == before, args
        assert m.git("status", "--porcelain") == "", args
        assert (m.repo / "data.bin").read_bytes() == head.bin, args
        assert (m.repo / "model.safetensors").read_bytes() == head.checkpoint, args
        return out

    # Our hook is in pre-push's place, so Git LFS's installers stop with exit 2 and a message
    # (our hook runs `git lfs pre-push` itself); --force replaces it (test_hooks.py).
    assert "Hook already exists: pre-push" in lfs("install", codes=(2,))
    assert "Hook already exists: pre-push" in lfs("update", codes=(2,))
    lfs("update", "--force")
    lfs("install", "--force")
    assert_every_version(m.env, m.repo, m.versions)

    lfs("push", "--all", "origin")
    # Only Git LFS's objects went up: git-theta's are not LFS pointers' objects.
    assert m.stored() == bins
    m.git("push", "-q", "origin", "main")  # prune keeps what no remote ref holds
    lfs("fetch", "--all")
    # Prune deletes the pushed LFS version that is no longer current, which shows it ran for
    # real; the older commit downloads it again when checked out.
    assert "1 file would be pruned" in lfs("prune", "--dry-run")
    lfs("prune", "--verify-remote")
    assert _lfs_objects(m.repo) == {lfs_oid(head.bin)}
    assert_every_version(m.env, m.repo, m.versions)

    assert "Git LFS fsck OK" in lfs("fsck")
    info = lfs("migrate", "info", "--everything")
    assert "*.safetensors" in info and "LFS Objects" in info
    assert_every_version(m.env, m.repo, m.versions)
