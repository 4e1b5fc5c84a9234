"""Every git config key, gitattribute and environment variable git-theta reads, in one table.

Each setting has its name, kind (git config, attribute, environment), the default that applies
when it is unset, the type of value it takes and a one-line description. Modules read settings
through these objects, never through string literals of their own, so this table is complete by
construction; README's configuration table is generated from it
(`python -m git_theta.settings --markdown`) and a test checks they agree.

Keys of other tools that git-theta honours (Git LFS's `lfs.*`) are listed too, as
`lfs.concurrenttransfers` serves both tools. Git's own keys (`remote.NAME.url`, ...) are not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from git_theta.git.repo import Repo

__all__ = [
    "ALL",
    "Attribute",
    "ConfigKey",
    "EnvVar",
    "Setting",
    "markdown_table",
]

Kind = Literal["git config", "attribute", "environment"]


@dataclass(frozen=True)
class Setting:
    """One setting: `name` as the user writes it, `default` as shown to the user ("" when
    unset means off or nothing), `type` of the value, `doc` one line."""

    name: str
    default: str
    type: str
    doc: str
    kind: Kind = "git config"


@dataclass(frozen=True)
class ConfigKey(Setting):
    """A `git config` key."""

    kind: Kind = "git config"

    def read(self, repo: Repo) -> str | None:
        """The key's value in `repo`'s git config; None when unset or empty."""
        return repo.config_get(self.name) or None

    def for_remote(self, remote: str) -> str:
        """The key for `remote` when the name holds `<remote>` (`remote.<remote>.lfsurl`)."""
        return self.name.replace("<remote>", remote)

    def read_from(self, section: Mapping[str, str]) -> str | None:
        """The key's value in a section already read (`Repo.config_section`, whose keys git
        gives in lower case); None when unset or empty."""
        return section.get(self.name.lower()) or None


@dataclass(frozen=True)
class Attribute(Setting):
    """A gitattribute (`.gitattributes`, `.git/info/attributes`)."""

    kind: Kind = "attribute"

    def read(self, repo: Repo, path: str) -> str | None:
        """The attribute's value for `path` in `repo`; None when unset."""
        return repo.check_attr(self.name, path)


@dataclass(frozen=True)
class EnvVar(Setting):
    """An environment variable."""

    kind: Kind = "environment"

    def read(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The variable's value in `environ` (default: this process's); None when unset."""
        return (os.environ if environ is None else environ).get(self.name)


# ---- storage ------------------------------------------------------------------------------
STORAGE = ConfigKey(
    "theta.storage",
    "`<git common dir>/theta`",
    "path",
    "Directory of the object store (may be shared by clones; relative to the git common dir).",
)
MAX_OBJECT_BYTES = ConfigKey(
    "theta.maxObjectBytes",
    "64g",
    "size",
    "Largest raw tensor an object may declare (k, m, g, t suffixes).",
)

# ---- formats and updates ------------------------------------------------------------------
FORMAT = ConfigKey(
    "theta.format",
    "",
    "format name",
    "Checkpoint format of every tracked file, instead of telling it from the content.",
)
FORMAT_ATTRIBUTE = Attribute(
    "theta-format",
    "",
    "format name",
    "Checkpoint format of the matching paths (wins over `theta.format`).",
)
UPDATE_TYPE = ConfigKey(
    "theta.updateType",
    "auto",
    "update type",
    "How changed tensors are stored (dense, sparse, delta, low-rank, ia3, auto).",
)
UPDATE_ATTRIBUTE = Attribute(
    "theta-update",
    "",
    "update type",
    "Update type of the matching paths (wins over `theta.updateType`).",
)
UPDATE_PATH = ConfigKey(
    "theta.updatePath",
    "",
    "path",
    "The update's side data (a PEFT adapter directory, a FISH mask), from the work tree.",
)
UPDATE_RANK = ConfigKey(
    "theta.updateRank",
    "",
    "int",
    "Rank of low-rank updates; unset: the rank that keeps the change exactly.",
)
MAX_UPDATE_CHAIN = ConfigKey(
    "theta.maxUpdateChain",
    "16",
    "int",
    "Updates stacked on a base (for auto and delta: versions stored against one snapshot) "
    "before a dense snapshot is stored instead.",
)

# ---- merges -------------------------------------------------------------------------------
MERGE_STRATEGY = ConfigKey(
    "theta.merge.strategy",
    "",
    "strategy",
    "Strategy for parameters changed on both sides; unset: ask at a terminal, else conflict.",
)
MERGE_OPTIONS = ConfigKey(
    "theta.merge.options",
    "",
    "KEY=VALUE ...",
    "Options of the merge strategy.",
)
MERGE_ATTRIBUTE = Attribute(
    "theta-merge",
    "",
    "strategy",
    "Merge strategy of the matching paths (wins over `theta.merge.strategy`).",
)
MERGE_STRATEGY_ENV = EnvVar(
    "GIT_THETA_MERGE_STRATEGY",
    "",
    "strategy",
    "Merge strategy for this command (wins over the attribute and git config).",
)
MERGE_OPTIONS_ENV = EnvVar(
    "GIT_THETA_MERGE_OPTIONS",
    "",
    "KEY=VALUE ...",
    "Options of the merge strategy for this command (wins over `theta.merge.options`).",
)

# ---- transfer -----------------------------------------------------------------------------
TRANSFER_TIMEOUT = ConfigKey(
    "theta.transfer.timeout",
    "300",
    "seconds",
    "Time each HTTP operation may take beyond its bytes at the minimum rate.",
)
TRANSFER_MIN_RATE = ConfigKey(
    "theta.transfer.minRate",
    "1k",
    "bytes/s",
    "Rate a transfer must keep up over every rate window (k, m, g suffixes).",
)
TRANSFER_RATE_WINDOW = ConfigKey(
    "theta.transfer.rateWindow",
    "30",
    "seconds",
    "Window over which the minimum rate is measured; also the longest silence.",
)
LFS_CONCURRENT_TRANSFERS = ConfigKey(
    "lfs.concurrenttransfers",
    "8",
    "int",
    "Objects moved at once (Git LFS's key).",
)
LFS_MAX_RETRIES = ConfigKey(
    "lfs.transfer.maxretries",
    "4",
    "int",
    "Further attempts after a server error, dropped connection or stall (Git LFS's key).",
)
LFS_MAX_RETRY_DELAY = ConfigKey(
    "lfs.transfer.maxretrydelay",
    "10",
    "seconds",
    "Ceiling of the exponential back-off between attempts (Git LFS's key).",
)
LFS_URL = ConfigKey(
    "lfs.url",
    "remote URL + `/info/lfs`",
    "URL",
    "LFS endpoint for every remote (also read from `.lfsconfig`; Git LFS's key).",
)
LFS_PUSH_URL = ConfigKey(
    "lfs.pushurl",
    "`lfs.url`",
    "URL",
    "LFS endpoint for uploads (also read from `.lfsconfig`; Git LFS's key).",
)
LFS_REMOTE_URL = ConfigKey(
    "remote.<remote>.lfsurl",
    "`lfs.url`",
    "URL",
    "LFS endpoint of one remote (also read from `.lfsconfig`; Git LFS's key).",
)
LFS_REMOTE_PUSH_URL = ConfigKey(
    "remote.<remote>.lfspushurl",
    "`remote.<remote>.lfsurl`",
    "URL",
    "LFS endpoint for uploads to one remote (also read from `.lfsconfig`; Git LFS's key).",
)
LFS_DEFAULT_REMOTE = ConfigKey(
    "remote.lfsdefault",
    "",
    "remote",
    "Remote to download missing objects from (Git LFS's key).",
)
LFS_REMOTE = ConfigKey(
    "lfs.remote",
    "upstream, `origin`, the only remote",
    "remote",
    "Remote to download from when `remote.lfsdefault` is unset (Git LFS's key).",
)
LFS_REPOSITORY_FORMAT = ConfigKey(
    "lfs.repositoryformatversion",
    "",
    "int",
    "Set by Git LFS in a repository it has used; tells git-theta to coexist with it.",
)

# ---- checkout ----------------------------------------------------------------------------
DIRECT_CHECKOUT_BYTES = ConfigKey(
    "theta.directCheckoutBytes",
    "67108864",
    "bytes",
    "Checkpoints with at least this many tensor bytes are written by git-theta itself, not "
    "through Git's in-memory smudge buffer, when the Git command allows (docs/design.md); "
    "0 turns that off.",
)
DIRECT_CHECKOUT_BYTES_ENV = EnvVar(
    "GIT_THETA_DIRECT_CHECKOUT_BYTES",
    "",
    "bytes",
    "Overrides `theta.directCheckoutBytes`.",
)
CHECKOUT_TRACE_ENV = EnvVar(
    "GIT_THETA_CHECKOUT_TRACE",
    "",
    "path",
    "Append one line per checkpoint checked out to this file: which path wrote it "
    "(direct or smudge) and for which Git command.",
)
FINISH_PAUSE_ENV = EnvVar(
    "GIT_THETA_TEST_FINISH_PAUSE",
    "",
    "bytes",
    "Testing only: a direct checkout stops for good after writing this many bytes of a "
    "checkpoint (to test a kill mid-write).",
)

# ---- history migration ---------------------------------------------------------------------
MIGRATE_PAUSE_ENV = EnvVar(
    "GIT_THETA_TEST_MIGRATE_PAUSE",
    "",
    "point",
    "Testing only: `git theta migrate import` stops for good at this point (`rewrite`: fast-import "
    "has the first commits; `refs`: before the refs move; `checkout`: after) to test a kill there.",
)


# ---- diagnostics --------------------------------------------------------------------------
TRACE_ENV = EnvVar(
    "GIT_THETA_TRACE",
    "",
    "bool",
    "Print a traceback for unexpected errors (set to 1).",
)
PROGRESS_ENV = EnvVar(
    "GIT_THETA_PROGRESS",
    "at a terminal",
    "bool",
    "Progress bars on stderr: 0 turns them off, 1 forces them.",
)

# ---- git-theta 0.2's variables, translated on start-up (git_theta/legacy_env.py) -----------
LEGACY_CHECKPOINT_TYPE = EnvVar(
    "GIT_THETA_CHECKPOINT_TYPE", "", "format name", "0.2's name for `theta.format`."
)
LEGACY_UPDATE_TYPE = EnvVar(
    "GIT_THETA_UPDATE_TYPE", "", "update type", "0.2's name for `theta.updateType`."
)
LEGACY_MAX_CONCURRENCY = EnvVar(
    "GIT_THETA_MAX_CONCURRENCY", "", "int", "0.2's name for `lfs.concurrenttransfers`."
)
LEGACY_LOG_LEVEL = EnvVar(
    "GIT_THETA_LOG_LEVEL", "", "level", "0.2's log level; DEBUG sets `GIT_THETA_TRACE=1`."
)
LEGACY_UPDATE_DATA = EnvVar(
    "GIT_THETA_UPDATE_DATA_PATH",
    "",
    "path",
    "0.2's side file of update tensors; ignored with a warning (use `git theta add`).",
)
LEGACY_APPLIED = EnvVar(
    "GIT_THETA_LEGACY_ENV_APPLIED",
    "",
    "internal",
    "Set by git-theta once 0.2's variables are translated, so a child does not redo it.",
)

ALL: tuple[Setting, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Setting))


def markdown_table(settings: tuple[Setting, ...] = ALL) -> str:
    """README's configuration table: one row per setting, in this module's order."""
    rows = [
        "| Setting | Kind | Type | Default | What it does |",
        "|---|---|---|---|---|",
    ]
    for s in settings:
        default = s.default or "unset"
        rows.append(f"| `{s.name}` | {s.kind} | {s.type} | {default} | {s.doc} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    """`python -m git_theta.settings --markdown`: print README's configuration table."""
    if argv != ["--markdown"]:
        sys.stderr.write("usage: python -m git_theta.settings --markdown\n")
        return 2
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
