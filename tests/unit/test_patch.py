"""PatchScanner: finding complete `diff --git` blocks in git's output, on hand-written output
in git's format (the end-to-end tests run it on real `git log -p`)."""

from __future__ import annotations

from git_theta.git.patch import PatchBlock, PatchScanner, plain, unquote_path

BLOCK = [
    b"diff --git a/m.safetensors b/m.safetensors\n",
    b"index 1a2b3c4..5d6e7f8 100644\n",
    b"--- a/m.safetensors\n",
    b"+++ b/m.safetensors\n",
    b"@@ -1,3 +1,3 @@\n",
    b" summary\n",
    b"-w  F32  2x2  l2=1\n",
    b"+w  F32  2x2  l2=2\n",
    b" z  F32  2  l2=0\n",
]


def scan(lines: list[bytes], answer: list[bytes] | None = None):
    """All output for `lines`, and the blocks the callback was asked about."""
    asked: list[PatchBlock] = []

    def rewrite(block: PatchBlock) -> list[bytes] | None:
        asked.append(block)
        return answer

    scanner = PatchScanner(rewrite)
    out: list[bytes] = []
    for line in lines:
        out += scanner.feed(line)
    return out + scanner.close(), asked


def test_a_complete_block_is_handed_over_whole_and_the_rest_passes_through():
    lines = [b"commit abc\n", b"\n", *BLOCK, b"\n", b"commit def\n"]
    out, asked = scan(lines, answer=[b"TABLE\n"])
    assert out == [b"commit abc\n", b"\n", b"TABLE\n", b"\n", b"commit def\n"]
    (block,) = asked
    assert block.lines() == BLOCK
    assert (block.old_blob, block.new_blob) == ("1a2b3c4", "5d6e7f8")
    assert block.path() == "m.safetensors" and not block.colored


def test_a_block_the_callback_declines_is_shown_as_it_came():
    out, asked = scan([*BLOCK, b"diff --git a/x b/x\n", b"new file mode 100644\n"])
    assert out == [*BLOCK, b"diff --git a/x b/x\n", b"new file mode 100644\n"]
    assert len(asked) == 2 and asked[1].path() == "x" and asked[1].old_blob is None


def test_hunks_are_counted_so_a_line_after_the_last_one_ends_the_block():
    lines = [
        *BLOCK[:4],
        b"@@ -1,2 +1 @@\n",
        b"-a\n",
        b"-b\n",
        b"+c\n",
        b"\\ No newline at end of file\n",
        b"@@ -9 +8,2 @@\n",
        b" d\n",
        b"+e\n",
        b"-not part of the block: a line after the counted ones\n",
    ]
    out, asked = scan(lines, answer=[b"T\n"])
    assert out == [b"T\n", lines[-1]]
    assert asked[0].body[-1] == b"+e\n"


def test_output_that_does_not_add_up_is_passed_through():
    word_diff = [*BLOCK[:5], b"summary\n", b"[-w l2=1-]{+w l2=2+}\n", b"z l2=0\n"]
    out, asked = scan(word_diff, answer=[b"T\n"])
    assert out == word_diff and asked == []
    cut_short = BLOCK[:-1]  # output ends with the hunk one line short
    out, asked = scan(cut_short, answer=[b"T\n"])
    assert out == cut_short and asked == []


def test_binary_and_header_only_blocks_end_where_git_ends_them():
    binary = [
        b"diff --git a/m.bin b/m.bin\n",
        b"index 0000000..5d6e7f8\n",
        b"Binary files /dev/null and b/m.bin differ\n",
    ]
    out, asked = scan([*binary, b"+ not a hunk\n"], answer=[b"T\n"])
    assert out == [b"T\n", b"+ not a hunk\n"]
    assert asked[0].old_blob is None and asked[0].path() == "m.bin"
    mode = [b"diff --git a/s.sh b/s.sh\n", b"old mode 100644\n", b"new mode 100755\n"]
    out, asked = scan([*mode, *BLOCK], answer=None)
    assert out == [*mode, *BLOCK] and [b.path() for b in asked] == ["s.sh", "m.safetensors"]


def test_colors_are_ignored_for_parsing_and_kept_in_the_output():
    colored = [
        b"\x1b[1mdiff --git a/m.safetensors b/m.safetensors\x1b[m\n",
        b"\x1b[1mindex 1a2b3c4..5d6e7f8 100644\x1b[m\n",
        b"\x1b[1m--- a/m.safetensors\x1b[m\n",
        b"\x1b[1m+++ b/m.safetensors\x1b[m\n",
        b"\x1b[36m@@ -1 +1 @@\x1b[m\n",
        b"\x1b[31m-old\x1b[m\n",
        b"\x1b[32m+\x1b[m\x1b[32mnew\x1b[m\n",
    ]
    out, asked = scan(colored, answer=None)
    assert out == colored
    assert asked[0].colored and asked[0].path() == "m.safetensors"
    assert plain(colored[-1]) == b"+new"


def test_paths_quoted_renamed_or_without_prefix():
    assert unquote_path('"a/caf\\303\\251 \\"x\\"\\tm"') == 'a/café "x"\tm'
    assert unquote_path("a/plain name") == "a/plain name"
    renamed = [
        b"diff --git a/old.pt b/new.pt\n",
        b"similarity index 90%\n",
        b"rename from old.pt\n",
        b"rename to new.pt\n",
        b"index 1a2b3c4..5d6e7f8 100644\n",
        b"--- a/old.pt\n",
        b'+++ "b/n\\303\\251w.pt"\n',
        b"@@ -1 +1 @@\n",
        b"-a\n",
        b"+b\n",
    ]
    _, asked = scan(renamed)
    assert asked[0].path() == "néw.pt" and asked[0].old_path == "a/old.pt"
    noprefix = [
        b"diff --git m.pt m.pt\n",
        b"index 1a2b3c4..5d6e7f8\n",
        b"Binary files m.pt and m.pt differ\n",
    ]
    _, asked = scan(noprefix)
    assert asked[0].path(prefixed=False) == "m.pt"
