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
