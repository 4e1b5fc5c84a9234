"""The pre-push hook installer: idempotent, chains a foreign hook, honours core.hooksPath."""

from __future__ import annotations

import pytest

from git_theta.errors import ConfigError
from git_theta.git import hooks
from git_theta.git.repo import Repo


def test_install_is_idempotent_and_honours_core_hooks_path(gitenv):
    path = gitenv.init_repo()
    gitenv.git("config", "core.hooksPath", "my-hooks", cwd=path)
    repo = Repo(path)
    assert hooks.install(repo) == "installed"
    assert hooks.install(repo) == "unchanged"
    hook = path / "my-hooks" / "pre-push"
    assert hook.read_text() == hooks.PRE_PUSH.script
    hook.write_text(hooks.PRE_PUSH.script.replace("version 2", "version 1"))
    assert hooks.install(repo) == "updated"  # an earlier version of ours is replaced in place
    assert not (path / "my-hooks" / "pre-push.legacy").exists()


def test_foreign_hook_is_chained_once(gitenv):
    path = gitenv.init_repo()
    repo = Repo(path)
    hook = path / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\nexit 0\n")
    assert hooks.install(repo, only_if_absent=True) == "skipped"
    assert hooks.install(repo) == "chained"
    assert (path / ".git" / "hooks" / "pre-push.legacy").read_text() == "#!/bin/sh\nexit 0\n"
    hook.write_text("#!/bin/sh\n# someone else's again\n")
    with pytest.raises(ConfigError, match="already exists"):
        hooks.install(repo)


LFS_HOOK = '#!/bin/sh\ngit lfs pre-push "$@"\n'


def test_git_lfs_hook_over_ours_is_replaced_and_a_users_never(gitenv):
    path = gitenv.init_repo()
    repo = Repo(path)
    hook = path / ".git" / "hooks" / "pre-push"
    legacy = path / ".git" / "hooks" / "pre-push.legacy"
    hook.write_text(LFS_HOOK)
    # A fresh clone: Git LFS's filter put its hook first; ours chains it even when asked
    # to leave existing hooks alone, as it is not a user's.
    assert hooks.install(repo, only_if_absent=True) == "chained"
    assert legacy.read_text() == LFS_HOOK
    hook.write_text(LFS_HOOK)  # `git lfs update --force`
    assert hooks.install(repo) == "restored"
    assert legacy.read_text() == LFS_HOOK and hook.read_text() == hooks.PRE_PUSH.script
    # A user's hook is chained, and Git LFS's overwriting ours afterwards loses nothing of it.
    legacy.write_text("#!/bin/sh\necho mine\n")
    hook.write_text(LFS_HOOK)
    assert hooks.install(repo) == "restored"
    assert legacy.read_text() == "#!/bin/sh\necho mine\n"
    # The same foreign hook put back over ours is recognised as already chained.
    hook.write_text("#!/bin/sh\necho mine\n")
    assert hooks.install(repo) == "restored"


def test_restore_acts_only_in_a_repository_that_tracks_checkpoints(gitenv):
    path = gitenv.init_repo()
    hook = path / ".git" / "hooks" / "pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(LFS_HOOK)
    assert hooks.restore(Repo(path)) is None  # nothing tracked: Git LFS's hook stays
    assert hook.read_text() == LFS_HOOK
    (path / ".gitattributes").write_text("*.pt filter=theta merge=theta diff=theta -text\n")
    message = hooks.restore(Repo(path))
    assert message == (
        "git-theta: restored the pre-push hook that Git LFS had replaced; "
        "Git LFS's runs first, as pre-push.legacy. Pushes made meanwhile sent no checkpoint "
        "objects: `git theta push --all` sends what the remote lacks"
    )
    assert hooks.restore(Repo(path)) is None
    hook.unlink()
    assert hooks.restore(Repo(path)) is None  # a deleted hook is the user's choice
    assert not hook.exists()
