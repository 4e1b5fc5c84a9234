from __future__ import annotations

from git_theta.git.attributes import add_patterns, remove_patterns, tracked_patterns

OTHER = "# models\n*.bin filter=lfs diff=lfs merge=lfs -text\n\n*.txt text eol=lf"


def test_add_is_idempotent_and_keeps_other_lines(tmp_path):
    f = tmp_path / ".gitattributes"
    f.write_text(OTHER)
    assert add_patterns(f, ["*.safetensors", "my model.pt"]) == ["*.safetensors", "my model.pt"]
    assert add_patterns(f, ["*.safetensors"]) == []
    assert f.read_text() == (
        OTHER
        + "\n*.safetensors filter=theta merge=theta diff=theta -text\n"
        + '"my model.pt" filter=theta merge=theta diff=theta -text\n'
    )
    assert tracked_patterns(f) == ["*.safetensors", "my model.pt"]


def test_remove_touches_only_our_lines(tmp_path):
    f = tmp_path / ".gitattributes"
    f.write_text(OTHER + "\n")
    add_patterns(f, ["*.safetensors", "*.bin"])
    assert remove_patterns(f, ["*.bin", "*.txt"]) == ["*.bin"]
    assert remove_patterns(f, ["*.safetensors"]) == ["*.safetensors"]
    assert f.read_text() == OTHER + "\n"


def test_missing_file_is_created(tmp_path):
    f = tmp_path / ".gitattributes"
    add_patterns(f, ["model.safetensors"])
    assert f.read_text() == "model.safetensors filter=theta merge=theta diff=theta -text\n"
