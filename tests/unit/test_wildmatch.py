"""`.gitattributes` pattern matching against git's own answer: every pattern and path of the
table goes through `git check-attr` in a real repository, and our matcher must agree."""

from __future__ import annotations

import pytest

from git_theta.git.attributes import quote_pattern
from git_theta.git.wildmatch import attribute_pattern_matches
from testing.gitenv import GitEnv

PATTERNS = [
    "*.safetensors",
    "my[[:space:]]model*.bin",
    "dir[[:space:]]é/*.bin",
    "/top.bin",
    "a/**/b.bin",
    "**/deep/*.bin",
    "sub/**",
    "model-?.bin",
    "[!a-c]*.bin",
    "[[:digit:]][[:upper:]].bin",
    "q\\*.bin",
    "x**y.bin",
    "with space.bin",
    "*.[Bb][Ii][Nn]",
]
PATHS = [
    "m.safetensors",
    "a/m.safetensors",
    "my model one.bin",
    "x/my model.bin",
    "my\tmodel.bin",
    "dir é/w.bin",
    "dir é/sub/w.bin",
    "top.bin",
    "x/top.bin",
    "a/b.bin",
    "a/x/y/b.bin",
    "ab.bin",
    "deep/z.bin",
    "p/q/deep/z.bin",
    "sub/one/two.bin",
    "model-1.bin",
    "model-12.bin",
    "apple.bin",
    "dog.bin",
    "7Z.bin",
    "q*.bin",
    "qq.bin",
    "xzzy.bin",
    "x/y.bin",
    "with space.bin",
    "w.BIN",
]


def test_patterns_match_as_git_check_attr_says(tmp_path):
    env = GitEnv(tmp_path, install=False)
    repo = tmp_path / "repo"
    env.git("init", "-q", str(repo), cwd=tmp_path)
    lines = [f"{quote_pattern(p)} hit{i}\n" for i, p in enumerate(PATTERNS)]
    (repo / ".gitattributes").write_text("".join(lines), encoding="utf-8")
    names = [f"hit{i}" for i in range(len(PATTERNS))]
    query = "".join(f"{p}\0" for p in PATHS).encode()
    out = env.run(["git", "check-attr", "-z", "--stdin", *names], cwd=repo, input=query)
    fields = out.stdout.decode().split("\0")[:-1]
    git_says = {
        (path, int(attr[3:]))
        for path, attr, value in zip(*[iter(fields)] * 3, strict=True)
        if value == "set"
    }
    ours = {
        (path, i)
        for path in PATHS
        for i, pattern in enumerate(PATTERNS)
        if attribute_pattern_matches(pattern, path)
    }
    assert ours == git_says
    assert len(git_says) > 20  # the table exercises matches, not only misses


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [("my[[:space:]]model.bin", "my model.bin", True), ("[unclosed.bin", "[unclosed.bin", True)],
)
def test_git_lfs_space_class_and_a_literal_bracket(pattern, path, expected):
    assert attribute_pattern_matches(pattern, path) is expected
