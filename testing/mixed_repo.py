"""A repository that keeps `*.bin` on Git LFS and `*.safetensors` on git-theta, with history,
built with real git and real Git LFS in either install order (tests/end_to_end/lfs_coexistence/).
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from git_theta.git.repo import Repo
from git_theta.store.location import open_store
from testing.checkpoints import random_params, write_safetensors
from testing.gitenv import GitEnv
from testing.lfs_server import LfsServer

__all__ = [
    "ORDERS",
    "Mixed",
    "Version",
    "assert_every_version",
    "both_installed",
    "build",
    "lfs_oid",
    "store_snapshot",
]

ORDERS = ("lfs-first", "theta-first")
SHAPES = {
    "embed.weight": ("F32", (16, 8)),
    "layer.weight": ("F16", (8, 8)),
    "layer.bias": ("F32", (8,)),
}
# (LFS file changed?, checkpoint changed?) per commit: LFS has two versions, theta three.
HISTORY = ((True, True), (False, True), (True, True))


@dataclass(frozen=True)
class Version:
    commit: str
    bin: bytes
    checkpoint: bytes


@dataclass
class Mixed:
    """A copy of the template: its GitEnv, work tree, committed versions and, once
    `connect`ed, its origin (bare refs + an LFS repository on giftless)."""

    env: GitEnv
    repo: Path
    order: str
    versions: list[Version]
    server: LfsServer | None = None
    lfs_name: str = ""
    bare: Path = field(default_factory=Path)

    def git(self, *args: str, check: bool = True) -> str:
        return self.env.git(*args, cwd=self.repo, check=check)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return self.env.run(list(args), cwd=self.repo, check=check)

    @property
    def hook(self) -> Path:
        return self.repo / ".git" / "hooks" / "pre-push"

    def connect(self, server: LfsServer, name: str) -> None:
        """A bare origin, and an LFS repository `name` in the local `lfs.url` (not a
        committed .lfsconfig: the history stays the template's, for every test)."""
        self.server, self.lfs_name = server, f"org/{name}"
        self.bare = self.env.root / "origin.git"
        self.env.git("init", "-q", "--bare", str(self.bare), cwd=self.env.root)
        self.git("remote", "add", "origin", str(self.bare))
        self.git("config", "lfs.url", self.lfs_url)

    @property
    def lfs_url(self) -> str:
        assert self.server is not None
        return self.server.lfs_url(self.lfs_name)

    def clone(self, env: GitEnv, name: str = "clone") -> Path:
        """Clone the origin as `env`'s user, with the same LFS server."""
        target = env.root / name
        env.git(
            "clone",
            "-q",
            "-c",
            f"lfs.url={self.lfs_url}",
            str(self.bare),
            str(target),
            cwd=env.root,
        )
        return target

    def stored(self) -> set[str]:
        assert self.server is not None
        return self.server.stored(self.lfs_name)


def lfs_oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_snapshot(repo: Path) -> dict[str, str]:
    """Every file of git-theta's object store, by path, with the sha256 of its bytes."""
    objects = open_store(Repo(repo)).objects_dir
    return {
        str(p.relative_to(objects)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(objects.rglob("*"))
        if p.is_file()
    }


def assert_every_version(env: GitEnv, repo: Path, versions: list[Version]) -> None:
    """Check out each committed version: both files byte-identical; the tree clean after."""
    branch = env.git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo).strip()
    # The branch holds the last version: ending there makes its checkout that version's check.
    for v in [*versions[:-1], None]:
        env.git("checkout", "-q", v.commit if v else branch, cwd=repo)
        v = v or versions[-1]
        assert (repo / "data.bin").read_bytes() == v.bin, v.commit
        assert (repo / "model.safetensors").read_bytes() == v.checkpoint, v.commit
    assert env.git("status", "--porcelain", cwd=repo) == ""


def both_installed(root: Path) -> GitEnv:
    """A fresh user with git-theta and Git LFS both in the global config."""
    env = GitEnv(root)
    env.run(["git", "lfs", "install", "--skip-repo"], cwd=root)
    return env


def build(root: Path, order: str) -> Mixed:
    """The mixed repository under `root`, set up in `order` (one of ORDERS)."""
    env = GitEnv(root, install=False)
    repo = root / "repo"
    env.git("init", "-q", str(repo), cwd=root)
    if order == "lfs-first":
        env.run(["git", "lfs", "install"], cwd=repo)
        env.run(["git", "lfs", "track", "*.bin"], cwd=repo)
        env.theta("install", cwd=root)
        out = env.theta("track", "*.safetensors", cwd=repo).stdout.decode()
        assert "kept as pre-push.legacy" in out
    else:
        env.theta("install", cwd=root)
        env.theta("track", "*.safetensors", cwd=repo)
        # Git LFS will not replace a hook it does not know: it says so, exits 2, and has
        # configured its filters before that.
        proc = env.run(["git", "lfs", "install"], cwd=repo, check=False)
        assert proc.returncode == 2, proc
        assert "Hook already exists: pre-push" in proc.stderr.decode()
        env.run(["git", "lfs", "track", "*.bin"], cwd=repo)
    assert "git-theta" in (repo / ".git" / "hooks" / "pre-push").read_text()
    env.git("add", ".gitattributes", cwd=repo)
    env.git("commit", "-q", "-m", "attributes", cwd=repo)

    versions: list[Version] = []
    rng = random.Random(order)
    blob, params = b"", random_params(SHAPES, seed=1)
    for i, (bin_changes, theta_changes) in enumerate(HISTORY):
        if bin_changes:
            blob = rng.randbytes(3000)
            (repo / "data.bin").write_bytes(blob)
        if theta_changes:
            params = {k: (d, a + a.dtype.type(i + 1)) for k, (d, a) in params.items()}
        checkpoint = write_safetensors(repo / "model.safetensors", params)
        env.git("add", "data.bin", "model.safetensors", cwd=repo)
        env.git("commit", "-q", "-m", f"v{i + 1}", cwd=repo)
        versions.append(Version(env.git("rev-parse", "HEAD", cwd=repo).strip(), blob, checkpoint))
    # What Git committed is what each side owns: a pointer for LFS, metadata for git-theta.
    assert env.git("show", "HEAD:data.bin", cwd=repo).startswith("version https://git-lfs")
    assert env.git("show", "HEAD:model.safetensors", cwd=repo).startswith('{\n  "git_theta"')
    return Mixed(env, repo, order, versions)
