"""A cloned repository whose metadata names objects by anything but a sha256: every object
reference, wherever it sits (parameter entries, the layout, each update type's records,
fields a plugin might add), is refused with one line naming the file, the parameter and the
field, before anything is opened. The outside "object" is a FIFO: opening it for reading
would block, so a test that passes proves it was never opened."""

from __future__ import annotations

import json
import os

import pytest

from tests.end_to_end.hostile.conftest import Hostile, one_line

HEX = "ab" * 32


def _cases(fifo: str) -> dict[str, tuple[str, dict, tuple[str, str]]]:
    """name -> (parameter, entry changes, (how the complaint starts, how the line ends)).
    Long values are cut short in messages, so a path is checked by its ends."""
    return {
        "absolute path with an extra key": (
            "w",
            {"updates": [{"type": "dense", "object": {"oid": fifo, "size": 9, "x": 0}}]},
            ("updates[0].object is not an object reference: unexpected key(s) ['x']", ""),
        ),
        "absolute path in a dense update": (
            "w",
            {"updates": [{"type": "dense", "object": {"oid": fifo, "size": 9}}]},
            ("updates[0].object.oid: '/", " is not 64 lowercase hex digits"),
        ),
        "/dev/stdin as the base object": (
            "w",
            {"object": {"oid": "/dev/stdin", "size": 9}},
            ("object.oid: '/dev/stdin' is not 64 lowercase hex digits", ""),
        ),
        "../ in sparse indices": (
            "b",
            {
                "updates": [
                    {
                        "type": "sparse",
                        "count": 1,
                        "indices": {"oid": "../../../../../../etc/passwd", "size": 9},
                        "values": {"oid": HEX, "size": 9},
                    }
                ]
            },
            ("updates[0].indices.oid: '../../../../../../etc/passwd' is not 64 lowercase hex", ""),
        ),
        "trailing newline": (
            "w",
            {"object": {"oid": HEX + "\n", "size": 9}},
            (f"object.oid: '{HEX}\\n' is not 64 lowercase hex digits", ""),
        ),
        "low-rank factor with a bool size": (
            "w",
            {
                "updates": [
                    {
                        "type": "low-rank",
                        "a": {"oid": HEX, "size": True},
                        "b": {"oid": HEX, "size": 9},
                        "scale": 1.0,
                        "tolerance": 1.0,
                        "transpose": False,
                    }
                ]
            },
            ("updates[0].a.size: True is not a byte count", ""),
        ),
        "IA3 vector in upper case": (
            "w",
            {
                "updates": [
                    {
                        "type": "ia3",
                        "axis": 0,
                        "tolerance": 1.0,
                        "vector": {"oid": HEX.upper(), "size": 9},
                    }
                ]
            },
            (f"updates[0].vector.oid: '{HEX.upper()}' is not 64 lowercase hex digits", ""),
        ),
        "a plugin's list of references": (
            "w",
            {"updates": [{"type": "plugin", "parts": [{"oid": HEX, "size": 1}, {"oid": fifo}]}]},
            ('updates[0].parts[1] is not an object reference: it needs "oid" and "size"', ""),
        ),
    }


CASES = list(_cases("FIFO"))


PREFIX = "git-theta: smudge failed: model.safetensors: malformed git-theta metadata: "


def _commit_case(hostile: Hostile, case: str) -> tuple[str, str]:
    fifo = hostile.env.root / "outside.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    name, changes, (start, end) = _cases(str(fifo))[case]
    entry = {**hostile.entry(name), **changes}
    hostile.commit_blob(hostile.with_entry(name, entry))
    return f"parameter '{name}': {start}", end


def _check(line: str, expected: tuple[str, str]) -> None:
    assert line.startswith(PREFIX + expected[0]) and line.endswith(expected[1]), line


@pytest.mark.parametrize("case", CASES)
def test_checkout_refuses_in_one_line(hostile, case):
    expected = _commit_case(hostile, case)
    hostile.path.unlink()
    _check(one_line(hostile.run("git", "checkout", "--", "model.safetensors")), expected)
    assert not hostile.path.exists()


@pytest.mark.parametrize("case", CASES[:3])
def test_clone_refuses_in_one_line(hostile, case):
    expected = _commit_case(hostile, case)
    target = hostile.env.root / "clone"
    result = hostile.run("git", "clone", "-q", str(hostile.repo), str(target), cwd=hostile.env.root)
    _check(one_line(result), expected)


@pytest.mark.parametrize("case", CASES[:3])
def test_diff_refuses_in_one_line(hostile, case):
    # git diff runs the filter on the revisions' blobs (the smudge of the diff driver's
    # inputs): the same line, and git diff fails.
    expected = _commit_case(hostile, case)
    _check(one_line(hostile.run("git", "diff", "HEAD~1", "HEAD")), expected)


def test_layout_reference_is_checked_too(hostile):
    fifo = hostile.env.root / "outside.fifo"
    os.mkfifo(fifo)
    text = hostile.metadata.decode()
    start = text.index('"layout": ') + len('"layout": ')
    end = text.index("\n", start) - 1  # before the comma
    layout = json.loads(text[start:end])
    layout["object"] = {"oid": str(fifo), "size": 9}
    blob = text[:start] + json.dumps(layout, sort_keys=True, separators=(", ", ": ")) + text[end:]
    hostile.commit_blob(blob.encode())
    hostile.path.unlink()
    line = one_line(hostile.run("git", "checkout", "--", "model.safetensors"))
    _check(line, ("layout: object.oid: '/", " is not 64 lowercase hex digits"))
