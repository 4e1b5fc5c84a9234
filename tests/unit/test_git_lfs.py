"""Recognising Git LFS's hook and its use in a repository; the attribute helpers `track`
uses to keep its hands off other drivers' paths."""

from __future__ import annotations

import pytest

from git_theta.git import attributes, hooks, lfs
from git_theta.git.repo import Repo

GUARD = 'command -v git-lfs >/dev/null 2>&1 || { echo >&2 "no git-lfs"; exit 2; }'


@pytest.mark.parametrize(
    "text",
    [
        '#!/bin/sh\ngit lfs pre-push "$@"\n',
        f'#!/bin/sh\n{GUARD}\ngit lfs pre-push "$@"\n',
        "#!/bin/sh\ngit lfs push --stdin $*\n",
        '\n#!/bin/sh\n{GUARD}\n\ngit lfs push --stdin "$@"\n\n'.replace("{GUARD}", GUARD),
    ],
)
def test_git_lfs_hooks_are_recognised(text):
    assert lfs.is_lfs_hook(text)
    assert lfs.calls_pre_push(text)


@pytest.mark.parametrize(
    "text",
    [
        hooks.PRE_PUSH.script,  # ours mentions `git lfs pre-push` only in comments
        '#!/bin/sh\ngit lfs pre-push "$@"\necho done\n',  # a user's edit: not Git LFS's
        '#!/bin/bash\ngit lfs pre-push "$@"\n',
        "",
    ],
)
def test_other_hooks_are_not_git_lfs_hooks(text):
    assert not lfs.is_lfs_hook(text)


def test_calls_pre_push_finds_the_call_in_a_users_hook_and_ignores_comments():
    assert lfs.calls_pre_push('#!/bin/sh\nset -e\n  exec git-lfs pre-push "$@"\n')
    assert not lfs.calls_pre_push('#!/bin/sh\n# git lfs pre-push "$@"\nexit 0\n')
    assert not lfs.calls_pre_push(hooks.PRE_PUSH.script)


def test_in_use_by_attributes_or_by_git_lfs_mark(gitenv):
    path = gitenv.init_repo()
    assert not lfs.in_use(Repo(path))
    (path / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    assert lfs.in_use(Repo(path))  # not even staged yet
    (path / ".gitattributes").write_text("# *.bin filter=lfs\n")
    assert not lfs.in_use(Repo(path))
    (path / "sub").mkdir()
    (path / "sub" / ".gitattributes").write_text("*.pt filter=lfs\n")
    gitenv.git("add", "sub/.gitattributes", cwd=path)
    assert lfs.in_use(Repo(path))
    gitenv.git("rm", "-q", "--cached", "sub/.gitattributes", cwd=path)
    (path / "sub" / ".gitattributes").unlink()
    (path / ".git" / "info" / "attributes").write_text("*.pt filter=lfs\n")
    assert lfs.in_use(Repo(path))
    (path / ".git" / "info" / "attributes").unlink()
    gitenv.git("config", "lfs.repositoryformatversion", "0", cwd=path)
    assert lfs.in_use(Repo(path))


def test_foreign_driver():
    assert attributes.foreign_driver({"filter": "lfs", "merge": "lfs"}) == "filter=lfs"
    assert attributes.foreign_driver({"filter": "theta", "diff": "npz"}) == "diff=npz"
    assert attributes.foreign_driver({"filter": "theta", "merge": "theta"}) is None
    assert attributes.foreign_driver({"filter": None, "merge": None, "diff": None}) is None


def test_remove_foreign_drops_only_that_patterns_foreign_lines(tmp_path):
    file = tmp_path / ".gitattributes"
    lines = [
        "# models\n",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "*.bin -text\n",  # names no driver: kept
        '"my *.bin" filter=lfs\n',
        "*.safetensors filter=theta merge=theta diff=theta -text\n",
        "*.txt merge=union",
    ]
    file.write_text("".join(lines))
    removed = attributes.remove_foreign(file, "*.bin")
    assert removed == ["*.bin filter=lfs diff=lfs merge=lfs -text"]
    assert file.read_text() == "".join(lines[:1] + lines[2:])
    assert attributes.remove_foreign(file, "*.safetensors") == []
    assert attributes.remove_foreign(file, "my *.bin") == ['"my *.bin" filter=lfs']
