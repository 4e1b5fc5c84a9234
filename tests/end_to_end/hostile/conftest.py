"""A hostile repository: metadata and objects as an attacker would commit them, and git
commands run on it under a deadline, with the peak memory of their processes measured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import GitEnv

# A real Git LFS server (giftless) for objects served to clones: the transfer tests' fixtures.
from tests.end_to_end.transfer.conftest import origin  # noqa: F401

# Seconds any one git command may take here; the hangs these tests guard against are forever.
DEADLINE = 60

# Run `argv` and report the peak RSS (KiB) of the largest process it waited for: git, and the
# filter process git waits for. A fresh interpreter, so only this command's processes count.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes
    peak_kib: int = 0

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


class Hostile:
    """A repository tracking `model.safetensors`, one honest commit in it, and ways to commit
    what an attacker would."""

    def __init__(self, env: GitEnv) -> None:
        self.env = env
        self.repo = env.init_repo(track=("*.safetensors",))
        self.path = self.repo / "model.safetensors"
        write_safetensors(self.path, random_params({"w": ("F32", (8, 8)), "b": ("F32", (8,))}))
        self.git("add", "model.safetensors")
        self.git("commit", "-q", "-m", "honest")
        self.metadata = self.git("show", "HEAD:model.safetensors").encode()

    def git(self, *args: str) -> str:
        return self.env.git(*args, cwd=self.repo)

    def run(self, *args: str, cwd: Path | None = None, measure: bool = False) -> Result:
        """`args` under DEADLINE; on timeout the whole process group is killed and the test
        fails (a hang is a failure, never a wait)."""
        peak_file = self.env.root / "peak-rss"
        argv = [sys.executable, "-c", _MEASURE, str(peak_file), *args] if measure else list(args)
        proc = subprocess.Popen(
            argv,
            cwd=cwd or self.repo,
            env=self.env.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{args} did not finish within {DEADLINE} s")
        peak = int(peak_file.read_text()) if measure else 0
        return Result(proc.returncode, out, err, peak)

    def entry(self, name: str = "w") -> dict:
        """The committed entry of parameter `name`, as JSON."""
        for line in self.metadata.decode().splitlines():
            if line.strip().startswith(json.dumps(name) + ":"):
                return json.loads(line.split(": ", 1)[1].rstrip(","))
        raise KeyError(name)

    def with_entry(self, name: str, entry: dict) -> bytes:
        """The committed metadata with parameter `name`'s entry replaced, canonical form."""
        lines = self.metadata.decode().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith(json.dumps(name) + ":"):
                comma = "," if line.endswith(",") else ""
                text = json.dumps(
                    entry, sort_keys=True, ensure_ascii=False, separators=(", ", ": ")
                )
                lines[i] = f"    {json.dumps(name)}: {text}{comma}"
        return ("\n".join(lines) + "\n").encode()

    def commit_blob(self, blob: bytes, message: str = "hostile") -> None:
        """Commit `blob` as `model.safetensors` exactly as given (no filter runs), as a
        hostile clone would hold it."""
        oid = (
            self.env.run(["git", "hash-object", "-w", "--stdin"], cwd=self.repo, input=blob)
            .stdout.decode()
            .strip()
        )
        self.git("update-index", "--cacheinfo", f"100644,{oid},model.safetensors")
        self.git("commit", "-q", "-m", message)

    def objects_dir(self, repo: Path | None = None) -> Path:
        return (repo or self.repo) / ".git" / "theta" / "objects"

    def place_object(self, blob: bytes) -> str:
        """Put `blob` in the store under its sha256, as a download would; returns the oid."""
        import hashlib

        oid = hashlib.sha256(blob).hexdigest()
        target = self.objects_dir() / oid[:2] / oid[2:4] / oid
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
        return oid


@pytest.fixture
def hostile(gitenv: GitEnv) -> Hostile:
    return Hostile(gitenv)


def one_line(result: Result) -> str:
    """Assert the command failed with exactly one git-theta line and no crash; return it."""
    assert result.returncode != 0, result.err
    assert "Traceback" not in result.err, result.err
    assert "internal error" not in result.err, result.err
    lines = [ln for ln in result.err.splitlines() if ln.startswith("git-theta:")]
    assert len(lines) == 1, result.err
    return lines[0]
