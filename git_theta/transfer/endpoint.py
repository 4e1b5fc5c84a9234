"""Where a remote keeps its objects, found the way Git LFS finds it.

Order (Git LFS `lfsapi/endpoint_finder.go`), first hit wins, each key read from git config and
then from the repository's `.lfsconfig`:

  upload only: `lfs.pushurl`
  `lfs.url`
  upload only: `remote.<name>.lfspushurl`
  `remote.<name>.lfsurl`
  the remote's URL (`remote.<name>.pushurl` for uploads, else `remote.<name>.url`) turned into
  an endpoint: `https://host/org/model(.git)` -> `https://host/org/model.git/info/lfs`;
  SSH and git:// URLs -> `https://host/path.git/info/lfs` (Git LFS's fallback, without
  `git-lfs-authenticate`); a local path or file:// URL -> that repository's own object store.

Spec: https://github.com/git-lfs/git-lfs/blob/main/docs/api/server-discovery.md
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from git_theta import settings
from git_theta.git.repo import Repo, run_git
from git_theta.transfer.base import Operation

__all__ = ["Endpoint", "default_remote", "endpoint_from_url", "find_endpoint", "lfsconfig"]

LFSCONFIG = ".lfsconfig"
# Keys Git LFS accepts from a committed .lfsconfig (a clone must not run arbitrary config).
_LFSCONFIG_SAFE = re.compile(r"^(lfs\.[^.]+|remote\.[^\n]+\.(lfsurl|lfspushurl))$")
# `user@host:path`, git's scp-like SSH syntax (no scheme, a colon before any slash).
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>.*)$")


@dataclass(frozen=True)
class Endpoint:
    """An LFS endpoint.

    Attributes:
        remote: the remote as the user named it (a remote name, or a URL).
        url: `http(s)://.../info/lfs`, or `file:///abs/repo` for a repository on this machine.
    """

    remote: str
    url: str

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def local_path(self) -> Path:
        """The repository directory of a file:// endpoint."""
        return Path(unquote(urlsplit(self.url).path))

    @property
    def description(self) -> str:
        shown = _without_password(self.url)
        return shown if self.remote in ("", self.url) else f"{self.remote} ({shown})"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    # A user name without a password is often a token (`https://<token>@host/...`): hidden too.
    user = f"{parts.username}:***" if parts.password is not None else "***"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def lfsconfig(repo: Repo) -> dict[str, str]:
    """The safe keys of `.lfsconfig`: from the work tree, else the index, else HEAD."""
    sources: list[list[str]] = []
    if repo.toplevel is not None and (repo.toplevel / LFSCONFIG).is_file():
        sources.append(["--file", str(repo.toplevel / LFSCONFIG)])
    sources += [["--blob", f":{LFSCONFIG}"], ["--blob", f"HEAD:{LFSCONFIG}"]]
    for source in sources:
        proc = run_git(
            ["config", *source, "--list", "-z"],
            cwd=repo.toplevel or repo.git_dir,
            check=False,
        )
        if proc.returncode != 0:
            continue
        values: dict[str, str] = {}
        for item in proc.stdout.decode("utf-8", "replace").split("\0"):
            key, _, value = item.partition("\n")
            if key and _LFSCONFIG_SAFE.match(key.lower()):
                values.setdefault(key.lower(), value)
        return values
    return {}


class _Config:
    """git config first, then .lfsconfig (read once, only when git config lacks a key)."""

    def __init__(self, repo: Repo) -> None:
        self._repo = repo
        self._lfsconfig: dict[str, str] | None = None

    def get(self, key: str) -> str | None:
        value = self._repo.config_get(key)
        if value:
            return value
        if self._lfsconfig is None:
            self._lfsconfig = lfsconfig(self._repo)
        return self._lfsconfig.get(key.lower()) or None


def default_remote(repo: Repo) -> str | None:
    """The remote to download from: `remote.lfsdefault` (Git LFS's key), `lfs.remote`, the
    current branch's upstream remote, `origin`, else the only remote; None without remotes."""
    for key in (settings.LFS_DEFAULT_REMOTE.name, settings.LFS_REMOTE.name):
        value = repo.config_get(key)
        if value:
            return value
    branch = (
        run_git(
            ["symbolic-ref", "-q", "--short", "HEAD"],
            cwd=repo.toplevel or repo.git_dir,
            check=False,
        )
        .stdout.decode()
        .strip()
    )
    if branch:
        upstream = repo.config_get(f"branch.{branch}.remote")
        if upstream and upstream != ".":
            return upstream
    remotes = repo.git("remote").decode().split()
    if "origin" in remotes:
        return "origin"
    return remotes[0] if len(remotes) == 1 else None


def find_endpoint(repo: Repo, remote: str, operation: Operation) -> Endpoint | None:
    """The LFS endpoint of `remote` (a configured remote's name, or a URL/path) for
    `operation`; None when nothing names one."""
    config = _Config(repo)
    url_key, remote_url = settings.LFS_URL.name, settings.LFS_REMOTE_URL.for_remote(remote)
    keys = [url_key, remote_url]
    if operation == "upload":
        push_key = settings.LFS_PUSH_URL.name
        keys = [push_key, url_key, settings.LFS_REMOTE_PUSH_URL.for_remote(remote), remote_url]
    for key in keys:
        value = config.get(key)
        if value:
            return endpoint_from_url(remote, value, base=_base_dir(repo), lfs_url=True)
    url = None
    if operation == "upload":
        url = repo.config_get(f"remote.{remote}.pushurl")
    url = url or repo.config_get(f"remote.{remote}.url")
    if url is None and _looks_like_url(remote):
        url = remote  # `git push URL` names no configured remote
    if not url:
        return None
    return endpoint_from_url(remote, url, base=_base_dir(repo))


def _base_dir(repo: Repo) -> Path:
    # Git resolves a relative remote path against where it runs: the work tree's top level.
    return repo.toplevel or repo.git_dir


def _looks_like_url(value: str) -> bool:
    return "://" in value or "/" in value or value in (".", "..") or bool(_SCP_LIKE.match(value))


def endpoint_from_url(remote: str, url: str, *, base: Path, lfs_url: bool = False) -> Endpoint:
    """The endpoint for a clone URL (or, with `lfs_url`, for a URL that is already one)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if lfs_url:
            return Endpoint(remote, url.rstrip("/"))
        path = parts.path.rstrip("/")
        if not path.endswith(".git"):
            path += ".git"
        return Endpoint(remote, urlunsplit(parts._replace(path=path + "/info/lfs", query="")))
    if scheme == "file":
        return Endpoint(remote, _file_url(Path(unquote(parts.path))))
    if scheme in ("ssh", "git", "git+ssh", "ssh+git"):
        return _https_fallback(remote, parts.hostname or "", parts.path)
    if not scheme or len(scheme) == 1:  # a path (a drive letter is no scheme)
        match = _SCP_LIKE.match(url)
        if match and "/" not in url.split(":", 1)[0] and not Path(url).exists():
            return _https_fallback(remote, match["host"], "/" + match["path"].lstrip("/"))
        local = Path(url).expanduser()
        return Endpoint(remote, _file_url(local if local.is_absolute() else base / local))
    return Endpoint(remote, url)  # an unknown scheme: the caller reports it unsupported


def _https_fallback(remote: str, host: str, path: str) -> Endpoint:
    path = path.rstrip("/")
    if not path.endswith(".git"):
        path += ".git"
    return Endpoint(remote, f"https://{host}{path}/info/lfs")


def _file_url(path: Path) -> str:
    return path.resolve().as_uri()
