"""Installing git-theta as a user does (`pip install`), into a throwaway venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["pip_install_venv"]


def pip_install_venv(root: Path, prefix: Path, work: Path, *, system_site: bool = False) -> None:
    """Install the package as a user would, into a fresh venv at `prefix`: build a wheel from
    a copy of the sources, then install it there. Never into this interpreter's own
    environment, where pip would first uninstall the package every test runs.

    `system_site`: the venv sees this interpreter's packages (numpy, click, ...), so its
    `git-theta` runs; its own copy of git_theta comes first on sys.path."""
    source = work / "src"
    shutil.copytree(
        root / "git_theta", source / "git_theta", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(root / "man", source / "man")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(work / "wheels"),
            str(source),
        ],
        capture_output=True,
        check=True,
    )
    site = ["--system-site-packages"] if system_site else []
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", *site, str(prefix)], check=True)
    wheel = next((work / "wheels").glob("git_theta-*.whl"))
    subprocess.run(
        [
            *pip,
            "--python",
            str(prefix / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        check=True,
    )
