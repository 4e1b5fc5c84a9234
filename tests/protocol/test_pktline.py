from __future__ import annotations

import io

import pytest

from git_theta.errors import ProtocolError
from git_theta.git.pktline import MAX_PAYLOAD, ContentWriter, PktLineReader, PktLineWriter
from testing import pktline as p


def test_text_list_round_trip():
    out = io.BytesIO()
    PktLineWriter(out).write_list(["git-filter-server", "version=2"])
    assert out.getvalue() == b"0016git-filter-server\n000eversion=2\n0000"
    assert PktLineReader(io.BytesIO(out.getvalue())).read_list() == [
        "git-filter-server",
        "version=2",
    ]


def test_content_spans_packets_and_stops_at_flush():
    data = bytes(range(256)) * 1000  # 256000 bytes: four packets
    stream = io.BytesIO(p.content(data) + p.text("after") + p.flush())
    reader = PktLineReader(stream)
    content = reader.content()
    assert content.readall() == data
    assert reader.read_list() == ["after"]


def test_content_writer_packs_full_packets():
    out = io.BytesIO()
    writer = ContentWriter(PktLineWriter(out))
    for _ in range(3):
        writer.write(b"x" * 50000)
    writer.finish()
    packets = p.parse(out.getvalue())
    assert [len(x) for x in packets] == [MAX_PAYLOAD, MAX_PAYLOAD, 150000 - 2 * MAX_PAYLOAD]


def test_truncated_packet_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="ended inside a packet"):
        PktLineReader(io.BytesIO(b"0010abc")).read_list()


def test_bad_length_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="bad packet header"):
        PktLineReader(io.BytesIO(b"zzzz")).read_list()


def test_clean_eof_between_lists():
    with pytest.raises(EOFError):
        PktLineReader(io.BytesIO(b"")).read_list(eof_ok=True)


def test_large_content_to_a_file_goes_out_in_order(tmp_path):
    # A real file has a descriptor, so content bypasses the buffer (writev); what was
    # buffered before it must still come first.
    data = bytes(range(256)) * 20_000  # 5.1 MB: several writev batches and a short tail
    path = tmp_path / "out"
    with path.open("wb", buffering=1024 * 1024) as f:
        writer = PktLineWriter(f)
        writer.write_list(["status=success"])
        content = ContentWriter(writer)
        content.write(data)
        content.finish()
        writer.flush_packet()
    stream = io.BytesIO(path.read_bytes())
    reader = PktLineReader(stream)
    assert reader.read_list() == ["status=success"]
    assert reader.content().readall() == data


def test_short_writes_are_resumed(tmp_path, monkeypatch):
    import os

    from git_theta.git import pktline

    real = os.writev
    monkeypatch.setattr(pktline.os, "writev", lambda fd, parts: real(fd, [parts[0][:1000]]))
    data = b"y" * (20 * MAX_PAYLOAD)
    path = tmp_path / "out"
    with path.open("wb") as f:
        PktLineWriter(f).write_content(data)
    assert [len(x) for x in p.parse(path.read_bytes())] == [MAX_PAYLOAD] * 20
