"""Real full and read-only file systems for tests: a small tmpfs mounted in a private
mount namespace (`unshare -m`), so the mount exists only for the commands run inside it and
vanishes with them. Skipped where the sandbox allows no mounts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from testing.gitenv import GitEnv

__all__ = ["in_private_mount"]


@cache
def _mounts_allowed(probe: str) -> bool:
    if shutil.which("unshare") is None:
        return False
    Path(probe).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(probe)}"],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def in_private_mount(
    env: GitEnv, mountpoint: Path, script: str, *, cwd: Path, size: str = "256k", ro: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """Run the shell `script` with a fresh tmpfs of `size` (read-only if `ro`) at `mountpoint`,
    visible only to it; skip the test when mounting is not allowed here."""
    if not _mounts_allowed(str(env.root / ".mount-probe")):
        pytest.skip("no permission to mount a tmpfs in a private mount namespace here")
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if ro else "")
    mount = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mountpoint))}"
    return env.run(["unshare", "-m", "sh", "-c", f"{mount} && {script}"], cwd=cwd, check=False)
