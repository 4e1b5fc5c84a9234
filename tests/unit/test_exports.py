import subprocess
import sys

import git_theta


def test_public_names_are_pinned_and_resolve():
    assert git_theta.__all__ == [
        "Checkpoint",
        "CheckpointError",
        "ConfigError",
        "CorruptObjectError",
        "CredentialsError",
        "Format",
        "GitError",
        "GitThetaError",
        "MergeError",
        "Metadata",
        "MetadataError",
        "MissingObjectError",
        "NotMetadataError",
        "ObjectRef",
        "ParamEntry",
        "ParamInfo",
        "ProtocolError",
        "RawTensor",
        "Repository",
        "RevisionError",
        "StoreError",
        "TransferError",
        "UnknownFormatError",
        "all_formats",
        "get_format",
        "load_from_git",
        "save_to_git",
    ]
    for name in git_theta.__all__:
        assert getattr(git_theta, name).__name__ == name


def test_the_filter_path_does_not_import_torch_or_numpy():
    code = (
        "import sys, git_theta.cli, git_theta.commands.filter, git_theta.clean, git_theta.smudge;"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_pager_imports_numpy_only_for_a_checkpoint_block():
    # git runs the pager for every `git log` at a terminal: passing lines through must not
    # pay for numpy.
    code = (
        "import sys, git_theta.cli, git_theta.commands.pager;"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
