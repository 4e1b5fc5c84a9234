"""Filter-protocol streams as git, or something pretending to be git, might send them, fed
to a real `git-theta filter-process`: well-framed requests each get status=success or
status=error and the process keeps serving; a broken stream ends it with one line; never a
hang, never a traceback."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from git_theta import metadata as md
from testing import pktline as p
from testing.checkpoints import random_params, safetensors_bytes
from testing.fuzzing import assert_clean_stderr, package_env, run_with_timeout, slow
from testing.mutations import Blob, mutated, safetensors_files

# Git caps a packet at 65516 payload bytes.
MAX_PAYLOAD = 65516
SERVE = "import sys; from git_theta.launcher import main; sys.exit(main(['filter-process']))"
HANDSHAKE = p.CLIENT_HANDSHAKE
SERVER_HANDSHAKE = p.SERVER_HANDSHAKE
# Names git can send: any bytes but NUL, including ones that are not UTF-8 (issue 14:
# `mod\xe9l.safetensors` written by a Latin-1 system).
PATHNAMES = st.one_of(
    st.sampled_from(
        [b"model.safetensors", b"mod\xe9l.safetensors", b"dir/m\xff\xfe.safetensors", b"a b\nc"]
    ),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b),
)
COMMANDS = st.sampled_from([b"clean", b"smudge", b"clean", b"smudge", b"delay", b"\xff", b""])
EXTRA = st.lists(
    st.sampled_from([b"can-delay=1", b"foo", b"=", b"\xff=\xfe", b"pathname=x", b"command=clean"]),
    max_size=2,
)


def _checkpoint() -> bytes:
    return safetensors_bytes(random_params({"w": ("F32", (3, 4)), "b": ("I64", (3,))}), pad=False)


CHECKPOINT = _checkpoint()


def _content(data: bytes, sizes: list[int]) -> bytes:
    """`data` as content packets of the given sizes (then 65516), and a flush."""
    out, i = [], 0
    for size in [*sizes, *[MAX_PAYLOAD] * (len(data) // MAX_PAYLOAD + 1)]:
        if i >= len(data):
            break
        out.append(p.pkt(data[i : i + size]))
        i += size
    return b"".join(out) + p.flush()


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, bytes]:
    """(command, pathname, content, framed request bytes)."""
    command = draw(COMMANDS)
    pathname = draw(PATHNAMES)
    content = draw(
        st.one_of(
            st.just(CHECKPOINT),
            mutated(CHECKPOINT),
            safetensors_files(),
            st.binary(max_size=64),
            st.just(md.MAGIC + b"1, broken"),
        )
    )
    items = [b"command=" + command, b"pathname=" + pathname, *draw(EXTRA)]
    head = b"".join(p.pkt(item + b"\n") for item in items) + p.flush()
    sizes = draw(st.lists(st.integers(1, 300), max_size=3))
    return command, pathname, bytes(content), head + _content(bytes(content), sizes)


def _serve(sandbox, stdin: bytes):
    env = package_env(sandbox.git_env())
    return run_with_timeout([sys.executable, "-c", SERVE], cwd=sandbox.repo, env=env, input=stdin)


def _packets(stream: bytes) -> list[bytes | None]:
    """The pkt-lines of our stdout; each must be whole."""
    out: list[bytes | None] = []
    i = 0
    while i < len(stream):
        n = int(stream[i : i + 4], 16)
        assert n == 0 or 4 < n <= MAX_PAYLOAD + 4, f"bad packet length {n} at {i}"
        assert i + max(n, 4) <= len(stream), "a packet cut short"
        out.append(None if n == 0 else stream[i + 4 : i + n])
        i += max(n, 4)
    return out


def _responses(packets: list[bytes | None]) -> list[tuple[bytes, bytes]]:
    """(status, content) per request from the packets after the handshake."""
    out = []
    it = iter(packets)
    for first in it:
        status = first
        assert next(it) is None, "status list longer than one item"
        content = b""
        if status == b"status=success\n":
            for packet in it:
                if packet is None:
                    break
                content += packet
            final = next(it)
            if final is not None:
                assert final == b"status=error\n"
                assert next(it) is None
                status = final
        else:
            assert status == b"status=error\n", status
        out.append((status, content))
    return out


@slow(0.3)
@given(reqs=st.lists(requests(), min_size=1, max_size=3))
def test_well_framed_requests_each_get_an_answer(sandbox, reqs):
    done = _serve(sandbox, HANDSHAKE + b"".join(r[3] for r in reqs))
    lines = assert_clean_stderr(done.stderr)
    assert done.returncode == 0, done.stderr
    packets = _packets(done.stdout)
    assert packets[:6] == SERVER_HANDSHAKE
    answers = _responses(packets[6:])
    assert len(answers) == len(reqs)
    errors = [a for a in answers if a[0] == b"status=error\n"]
    assert len(lines) == len(errors), done.stderr
    for (command, _, content, _), (status, out) in zip(reqs, answers, strict=True):
        if command not in (b"clean", b"smudge"):
            assert status == b"status=error\n"
        elif command == b"clean" and content == CHECKPOINT:
            assert status == b"status=success\n", done.stderr
            assert md.looks_like_metadata(out)


@slow(0.3)
@given(
    stream=st.lists(requests(), min_size=0, max_size=2).flatmap(
        lambda reqs: mutated(HANDSHAKE + b"".join(r[3] for r in reqs))
    )
)
def test_a_broken_stream_ends_the_process_in_one_line(sandbox, stream):
    done = _serve(sandbox, stream)
    lines = assert_clean_stderr(done.stderr)
    assert done.returncode in (0, 1), done.stderr
    if done.returncode == 1:
        assert lines and lines[-1].startswith("git-theta: error:"), done.stderr
    _packets(done.stdout)


@pytest.mark.parametrize(
    "pathname", [b"mod\xe9l.safetensors", b"\xff\xfe.safetensors"], ids=["latin-1", "not-utf-8"]
)
def test_a_name_that_is_not_utf8_is_served(sandbox, pathname):
    """Known (issue 14): a non-UTF-8 pathname packet crashed the process."""
    request = p.text("command=clean") + p.pkt(b"pathname=" + pathname + b"\n") + p.flush()
    done = _serve(sandbox, HANDSHAKE + request + _content(CHECKPOINT, []))
    assert_clean_stderr(done.stderr)
    assert done.returncode == 0, done.stderr
    answers = _responses(_packets(done.stdout)[6:])
    assert answers and answers[0][0] == b"status=success\n", done.stderr
    assert Blob(answers[0][1]).startswith(md.MAGIC)
