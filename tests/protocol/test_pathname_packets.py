"""Pathname packets are bytes: git sends a file's name as it is on disk, UTF-8 or not."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from git_theta import metadata as md
from git_theta.commands.filter import filter_process
from git_theta.git.pktline import PktLineReader, PktLineWriter
from testing import pktline as p
from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv

RAW_NAME = b"mod\xe9l.safetensors"  # Latin-1 e-acute: not UTF-8
HANDSHAKE = (
    p.text("git-filter-client", "version=2")
    + p.flush()
    + p.text("capability=clean", "capability=smudge")
    + p.flush()
)


def raw_request(command: bytes, path: bytes, data: bytes) -> bytes:
    return (
        p.pkt(b"command=" + command + b"\n")
        + p.pkt(b"pathname=" + path + b"\n")
        + p.flush()
        + p.content(data)
    )


def test_a_non_utf8_text_packet_keeps_its_bytes():
    stream = io.BytesIO(p.pkt(b"pathname=" + RAW_NAME + b"\n") + p.flush())
    (item,) = PktLineReader(stream).read_list()
    assert os.fsencode(item) == b"pathname=" + RAW_NAME
    out = io.BytesIO()
    PktLineWriter(out).write_list([item])
    assert p.parse(out.getvalue()) == [b"pathname=" + RAW_NAME + b"\n", None]


def test_filter_process_serves_a_non_utf8_pathname(tmp_path: Path, monkeypatch):
    env = GitEnv(tmp_path)
    repo = env.init_repo(track=("*.safetensors",))
    monkeypatch.chdir(repo)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", env.env["GIT_CONFIG_GLOBAL"])
    checkpoint = write_safetensors(
        tmp_path / "m.safetensors", {"w": ("F32", np.arange(12, dtype="<f4").reshape(3, 4))}
    )
    stdin = (
        HANDSHAKE
        + raw_request(b"clean", RAW_NAME, checkpoint)
        + raw_request(b"clean", RAW_NAME, b"not a checkpoint at all")
    )
    out, err = io.BytesIO(), io.StringIO()
    assert filter_process(io.BytesIO(stdin), out, err) == 0
    packets = p.parse(out.getvalue())
    assert packets[6] == b"status=success\n"
    meta_bytes = b"".join(x for x in packets[8 : packets.index(None, 8)])
    assert sorted(md.decode(meta_bytes).params) == ["w"]
    assert packets[-2:] == [b"status=error\n", None]
    assert err.getvalue().count("\n") == 1
    assert err.getvalue().startswith(
        'git-theta: clean failed: "mod\\351l.safetensors": not a checkpoint format'
    )

    out = io.BytesIO()
    smudge = HANDSHAKE + raw_request(b"smudge", RAW_NAME, meta_bytes)
    assert filter_process(io.BytesIO(smudge), out, err) == 0
    smudged = p.parse(out.getvalue())
    assert smudged[6] == b"status=success\n"
    assert b"".join(x for x in smudged[8:-2] if x) == checkpoint


def test_a_request_naming_two_commands_is_refused_not_served_as_the_last():
    # Found by the fuzz suite: `command=` then `command=clean` was cleaned (status=success).
    stdin = HANDSHAKE + (
        p.pkt(b"command=smudge\n")
        + p.pkt(b"pathname=x\n")
        + p.pkt(b"command=clean\n")
        + p.flush()
        + p.content(b"abc")
    )
    out, err = io.BytesIO(), io.StringIO()
    assert filter_process(io.BytesIO(stdin), out, err) == 0
    assert p.parse(out.getvalue())[-2:] == [b"status=error\n", None]
    assert "unsupported filter command '(several commands)'" in err.getvalue()
