"""Mutated safetensors files: clean either stores them so that smudge gives back every byte,
or refuses them in one line, storing nothing; never another exception, a hang or a read
outside the repository."""

from __future__ import annotations

import io

import pytest
from hypothesis import given

from git_theta.errors import GitThetaError
from git_theta.smudge import PassThrough
from testing.fuzzing import (
    assert_clean_stderr,
    assert_one_line,
    package_env,
    run_with_timeout,
    slow,
    time_limit,
)
from testing.mutations import Blob, deep_json, safetensors_files

PATH = "model.safetensors"


def _frame(header: bytes, data: bytes = b"") -> Blob:
    return Blob(len(header).to_bytes(8, "little") + header + data)


# Known hostile headers (issue 14): nesting deeper than the recursion limit, a lone surrogate
# in a tensor name, offsets past 2**64, a length prefix past the file.
DEEP_HEADER = _frame(b'{"w": {"dtype": "F32", "shape": ' + deep_json(100_000).encode() + b"}}")
SURROGATE_NAME = _frame(b'{"\\ud800": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', b"x")
HUGE_OFFSETS = _frame(
    b'{"w": {"dtype": "U8", "shape": [0], "data_offsets": [18446744073709551616, '
    b"18446744073709551616]}}"
)
LONG_PREFIX = Blob((2**63).to_bytes(8, "little") + b'{"w": 1}')


def clean_and_smudge(sandbox, content: bytes) -> bytes | None:
    """Clean `content` in the sandbox; if it is accepted, smudge the metadata and return it."""
    before = sandbox.objects()
    with time_limit(), sandbox.audit() as audit, sandbox.session() as session:
        try:
            meta = session.clean(io.BytesIO(content), PATH)
        except GitThetaError as exc:
            assert_one_line(exc)
            meta = None
        if meta is None:
            assert sandbox.objects() == before, "a refused checkpoint left objects behind"
        else:
            assert session.clean(io.BytesIO(meta), PATH) == meta  # clean is idempotent
            out = io.BytesIO()
            try:
                session.smudge(meta, PATH, out)
            except PassThrough:
                out.write(meta)
            assert out.getvalue() == content, "the round trip changed the checkpoint"
    assert not audit.forbidden(), audit.forbidden()
    return meta


@given(content=safetensors_files())
def test_clean_round_trips_or_refuses_in_one_line(sandbox, content):
    clean_and_smudge(sandbox, content)


# Outside the property, so that generation still runs while one of these fails.
@pytest.mark.parametrize(
    "content",
    [DEEP_HEADER, SURROGATE_NAME, HUGE_OFFSETS, LONG_PREFIX],
    ids=["deep-nesting", "surrogate-name", "offsets-past-2**64", "length-past-the-file"],
)
def test_known_hostile_headers(sandbox, content):
    clean_and_smudge(sandbox, content)


@slow()
@given(content=safetensors_files())
def test_git_add_round_trips_or_fails_in_one_line(sandbox, content):
    """The same through real git: `git add` fails with one git-theta line and an unchanged
    index, or `git checkout` of what it staged gives back the same bytes."""
    repo = sandbox.repo
    env = package_env(sandbox.git_env())
    theta = run_with_timeout(["git-theta", "install", "--local"], cwd=repo, env=env)
    assert theta.returncode == 0, theta.stderr
    (repo / ".gitattributes").write_text(
        "*.safetensors filter=theta merge=theta diff=theta -text\n"
    )
    before = run_with_timeout(["git", "ls-files", "-s"], cwd=repo, env=env).stdout
    (repo / PATH).write_bytes(content)
    added = run_with_timeout(["git", "add", PATH], cwd=repo, env=env)
    lines = assert_clean_stderr(added.stderr, allow_git=True)
    if added.returncode != 0:
        assert len(lines) == 1, added.stderr
        assert run_with_timeout(["git", "ls-files", "-s"], cwd=repo, env=env).stdout == before
        return
    assert not lines, added.stderr
    (repo / PATH).unlink()
    checkout = run_with_timeout(["git", "checkout", "--", PATH], cwd=repo, env=env)
    assert checkout.returncode == 0, checkout.stderr
    assert (repo / PATH).read_bytes() == content
