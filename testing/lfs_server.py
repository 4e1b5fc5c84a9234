"""A real Git LFS server for tests and benchmarks: giftless with local storage on 127.0.0.1.

giftless lives in a virtualenv of its own (scripts/install-lfs-server.sh), found at
$GIT_THETA_LFS_SERVER_PYTHON or `.lfs-server/venv/bin/python` in the checkout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["LfsServer", "free_port", "giftless_python"]

ROOT = Path(__file__).resolve().parent.parent
MAIN = Path(__file__).resolve().parent / "giftless_main.py"
PYTHON_ENV = "GIT_THETA_LFS_SERVER_PYTHON"
START_TIMEOUT = 60.0


def giftless_python() -> Path | None:
    """The interpreter that has giftless installed, or None."""
    configured = os.environ.get(PYTHON_ENV)
    candidate = Path(configured) if configured else ROOT / ".lfs-server" / "venv" / "bin" / "python"
    return candidate if candidate.exists() else None


def free_port() -> int:
    """A port nothing listens on (bound and released; good enough on loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LfsServer:
    """giftless serving `storage` on a free port until `stop()`.

    Args:
        storage: where objects are kept: `<storage>/<org>/<repo>/<oid>`.
        user, password: require HTTP basic credentials on the batch endpoint.
    """

    def __init__(
        self, storage: Path, *, user: str | None = None, password: str | None = None
    ) -> None:
        python = giftless_python()
        if python is None:
            raise RuntimeError("giftless is not installed: run scripts/install-lfs-server.sh")
        self.storage = storage
        storage.mkdir(parents=True, exist_ok=True)
        args = [str(python), str(MAIN), "--storage", str(storage)]
        if user is not None:
            args += ["--user", user, "--password", password or ""]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIFTLESS_")}
        self._log = (storage.parent / f"{storage.name}.log").open("wb")
        self._proc = subprocess.Popen(
            args,
            cwd=storage.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        found: list[int] = []

        def read() -> None:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith(b"LISTENING "):
                    found.append(int(line.split()[1]))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        if not found:
            self.stop()
            log = (self.storage.parent / f"{self.storage.name}.log").read_text(errors="replace")
            raise RuntimeError(f"giftless did not start:\n{log[-2000:]}")
        return found[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_url(self, repo: str = "org/model") -> str:
        """The clone URL a hosted server would give for `repo`."""
        return f"{self.url}/{repo}.git"

    def lfs_url(self, repo: str = "org/model") -> str:
        return f"{self.repo_url(repo)}/info/lfs"

    def stored(self, repo: str = "org/model") -> set[str]:
        """The oids the server holds for `repo`."""
        root = self.storage / repo
        return {p.name for p in root.iterdir() if p.is_file()} if root.is_dir() else set()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()

    def __enter__(self) -> LfsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # a manual check: start, print the URL, stop on Enter
    with LfsServer(Path(sys.argv[1] if len(sys.argv) > 1 else "lfs-storage").resolve()) as srv:
        print(srv.url, flush=True)
        try:
            input()
        except (EOFError, KeyboardInterrupt):
            pass
        time.sleep(0)
