"""Credentials through git's own helpers: `git credential fill`, `approve`, `reject`.

Whatever the user set up for git (a store, the OS keychain, a manager, a prompt on the
terminal) serves git-theta too, as it serves Git LFS. We pass `url=`; git applies
`credential.useHttpPath` and the per-URL `credential.<url>.*` settings itself.
Protocol: https://git-scm.com/docs/git-credential#IOFMT
"""

from __future__ import annotations

from dataclasses import dataclass

from git_theta.git.repo import Repo, run_git

__all__ = ["Credential", "approve", "fill", "reject"]


@dataclass(frozen=True)
class Credential:
    """A username and password git's helpers gave for `url`."""

    url: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Credential(url={self.url!r}, username={self.username!r})"


def _encode(fields: dict[str, str]) -> bytes:
    for value in fields.values():
        if "\n" in value or "\0" in value:
            raise ValueError("credential fields cannot hold newlines or NUL bytes")
    return "".join(f"{k}={v}\n" for k, v in fields.items()).encode("utf-8") + b"\n"


def _credential(repo: Repo, action: str, fields: dict[str, str]) -> bytes | None:
    proc = run_git(
        ["credential", action],
        cwd=repo.toplevel or repo.git_dir,
        input=_encode(fields),
        check=False,
    )
    return proc.stdout if proc.returncode == 0 else None


def fill(repo: Repo, url: str) -> Credential | None:
    """Ask git's credential helpers (or the terminal) for `url`; None when none can be had
    (no helper answers and prompting is impossible or refused)."""
    out = _credential(repo, "fill", {"url": url})
    if out is None:
        return None
    values = dict(
        line.split("=", 1) for line in out.decode("utf-8", "replace").splitlines() if "=" in line
    )
    if "password" not in values:
        return None
    return Credential(url, values.get("username", ""), values["password"])


def approve(repo: Repo, credential: Credential) -> None:
    """Tell the helpers the credential worked, so they may store it."""
    _credential(repo, "approve", _fields(credential))


def reject(repo: Repo, credential: Credential) -> None:
    """Tell the helpers the credential was refused, so they forget it."""
    _credential(repo, "reject", _fields(credential))


def _fields(credential: Credential) -> dict[str, str]:
    return {
        "url": credential.url,
        "username": credential.username,
        "password": credential.password,
    }
