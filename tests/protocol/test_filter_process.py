"""The filter process against in-memory streams: git's side is scripted byte for byte."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from git_theta import metadata as md
from git_theta.commands.filter import filter_process
from git_theta.errors import ProtocolError
from git_theta.git.filter_process import FilterServer, Request
from git_theta.git.pktline import ContentWriter
from testing import pktline as p
from testing.checkpoints import write_safetensors
from testing.gitenv import GitEnv

HANDSHAKE = p.CLIENT_HANDSHAKE
SERVER_HANDSHAKE = p.SERVER_HANDSHAKE


def request(command: str, path: str, data: bytes) -> bytes:
    return p.text(f"command={command}", f"pathname={path}") + p.flush() + p.content(data)


def serve(stdin: bytes, handler) -> list[bytes | None]:
    out = io.BytesIO()
    server = FilterServer(io.BytesIO(stdin), out)
    server.handshake()
    errors: list[str] = []
    for req in server.requests():
        server.respond(req, handler, lambda r, e: errors.append(f"{r.pathname}: {e}"))
    return p.parse(out.getvalue())


def upper(req: Request, out: ContentWriter) -> None:
    data = req.content.readall()
    if data == b"bad":
        raise ValueError("bad content")
    out.write(data.upper())


def test_handshake_negotiates_clean_and_smudge_only():
    assert serve(HANDSHAKE, upper) == SERVER_HANDSHAKE


def test_success_response_framing():
    packets = serve(HANDSHAKE + request("clean", "a.bin", b"hello"), upper)
    assert packets[6:] == [b"status=success\n", None, b"HELLO", None, None]


def test_one_bad_file_answers_error_and_the_process_keeps_serving():
    stdin = HANDSHAKE + request("clean", "bad.bin", b"bad") + request("clean", "ok.bin", b"ok")
    packets = serve(stdin, upper)
    assert packets[6:] == [
        b"status=error\n",
        None,
        b"status=success\n",
        None,
        b"OK",
        None,
        None,
    ]


def test_error_after_content_started_ends_content_then_reports():
    def half(req: Request, out: ContentWriter) -> None:
        req.content.readall()
        out.write(b"partial")
        raise RuntimeError("boom")

    packets = serve(HANDSHAKE + request("smudge", "x", b"meta"), half)
    # Content already begun is ended with a flush (git discards it), then the error status.
    assert packets[6:8] == [b"status=success\n", None]
    assert packets[-3:] == [None, b"status=error\n", None]


def test_handler_that_stops_reading_early_still_drains_the_content():
    def stop_early(req: Request, out: ContentWriter) -> None:
        req.content.read(3)
        raise ValueError("refused after three bytes")

    stdin = HANDSHAKE + request("clean", "a", b"x" * 200000) + request("clean", "b", b"y")
    packets = serve(stdin, stop_early)
    assert packets[6:] == [b"status=error\n", None, b"status=error\n", None]


def test_broken_handshake_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        FilterServer(io.BytesIO(p.text("hello") + p.flush()), io.BytesIO()).handshake()


def test_real_filter_process_cleans_and_smudges_in_a_repository(tmp_path: Path, monkeypatch):
    env = GitEnv(tmp_path)
    repo = env.init_repo()
    monkeypatch.chdir(repo)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", env.env["GIT_CONFIG_GLOBAL"])
    checkpoint = write_safetensors(
        tmp_path / "m.safetensors",
        {"w": ("F32", np.arange(12, dtype="<f4").reshape(3, 4)), "b": ("I64", np.arange(3))},
        metadata={"format": "pt"},
    )
    stdin = (
        HANDSHAKE
        + request("clean", "m.safetensors", checkpoint)
        + request("clean", "junk.bin", b"not a checkpoint at all")
    )
    out, err = io.BytesIO(), io.StringIO()
    assert filter_process(io.BytesIO(stdin), out, err) == 0
    packets = p.parse(out.getvalue())
    assert packets[6] == b"status=success\n"
    meta_bytes = b"".join(x for x in packets[8 : packets.index(None, 8)])
    meta = md.decode(meta_bytes)
    assert sorted(meta.params) == ["b", "w"]
    assert packets[-2:] == [b"status=error\n", None]
    assert err.getvalue().startswith("git-theta: clean failed: junk.bin: not a checkpoint format")
    assert err.getvalue().count("\n") == 1

    out = io.BytesIO()
    filter_process(io.BytesIO(HANDSHAKE + request("smudge", "m.safetensors", meta_bytes)), out, err)
    smudged = p.parse(out.getvalue())
    assert smudged[6] == b"status=success\n"
    assert b"".join(x for x in smudged[8:-2] if x) == checkpoint


def test_console_script_serves_the_protocol_without_the_cli_framework():
    # git waits for this process's handshake in every command that touches a checkpoint;
    # the launcher answers it without importing click (a fifth of the start-up).
    code = (
        "import atexit, sys;"
        "atexit.register(lambda: sys.stderr.write(f'click={\"click\" in sys.modules}'));"
        "from git_theta.launcher import main;"
        "sys.exit(main(['filter-process']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=HANDSHAKE, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert p.parse(done.stdout) == SERVER_HANDSHAKE
    assert done.stderr.decode().endswith("click=False")
