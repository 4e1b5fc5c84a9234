"""The fuzz suite's shared settings and sandbox.

Default run: a fixed seed per property (derandomize) and GIT_THETA_FUZZ_EXAMPLES cases (30),
so the suite runs the same cases everywhere in well under a minute. The long run:
    GIT_THETA_FUZZ_EXAMPLES=5000 python -m pytest -n auto -p no:cacheprovider tests/fuzz
and GIT_THETA_FUZZ_SEED=N draws other cases than the fixed ones. No example database: nothing
is written into the repository (.hypothesis/ is ignored anyway).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis.configuration import set_hypothesis_home_dir

from git_theta.clean import Cleaner
from git_theta.context import RepoContext
from git_theta.git.repo import Repo
from git_theta.smudge import Smudger
from git_theta.store import ObjectStore, encode_object, open_store
from git_theta.tensor import RawTensor, content_hash
from testing.fuzzing import EXAMPLES_ENV, SEED_ENV, OpenAudit, examples
from testing.gitenv import GitEnv
from testing.mutations import HostileRef

_SEED = os.environ.get(SEED_ENV)
# Hypothesis keeps files (patches for failing examples) in its home directory, `.hypothesis/`
# under the current one by default: point it at a temporary directory instead.
_HOME = tempfile.mkdtemp(prefix="git-theta-hypothesis-")
set_hypothesis_home_dir(_HOME)
# The failure report's patch writer imports libcst, which warns about mypy_extensions on
# import; under filterwarnings=error that warning would replace the report. Import it now.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except Exception:  # noqa: BLE001 - without libcst, Hypothesis just writes no patch
        pass

settings.register_profile(
    "git-theta-fuzz",
    max_examples=examples(),
    derandomize=_SEED is None,
    deadline=None,  # each case has its own hang limit (testing/fuzzing.py time_limit)
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("git-theta-fuzz")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _SEED is None:
        return
    for item in items:
        test = getattr(item, "obj", None)
        if getattr(test, "is_hypothesis_test", False):
            seed(int(_SEED))(test)


def pytest_unconfigure() -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


def pytest_report_header() -> str:
    return (
        f"git-theta fuzz: {examples()} cases per property ({EXAMPLES_ENV}), seed {_SEED or 'fixed'}"
    )


SENTINEL_MARK = b"SENTINEL-" + secrets.token_hex(8).encode()


class Filters:
    """A cleaner and a smudger on one context, closed together (as the filter process has)."""

    def __init__(self, ctx: RepoContext) -> None:
        self.ctx = ctx
        self.cleaner = Cleaner(ctx)
        self.clean = self.cleaner.clean
        self.smudge = Smudger(ctx).smudge

    def __enter__(self) -> Filters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleaner.close()
        self.ctx.close()


class Sandbox:
    """A scratch repository for in-process filtering, and next to it (outside it) a sentinel:
    a well-formed object whose tensor bytes are SENTINEL_MARK repeated. Metadata that gets
    git-theta to read it would check its bytes out, so any output must never contain them.
    """

    def __init__(self, root: Path) -> None:
        self.env = GitEnv(root / "env", install=False)
        self.repo = self.env.init_repo()
        self.outside = root / "outside"
        self.outside.mkdir()
        self.mark = SENTINEL_MARK
        self.sentinel_tensor = RawTensor("U8", (len(SENTINEL_MARK) * 4,), SENTINEL_MARK * 4)
        blob = b"".join(bytes(c) for c in encode_object(self.sentinel_tensor))
        self.sentinel = self.outside / "sentinel"
        self.sentinel.write_bytes(blob)
        self.sentinel_ref = HostileRef(str(self.sentinel), len(blob))
        self.sentinel_hash = content_hash(self.sentinel_tensor.data)

    @property
    def store(self) -> ObjectStore:
        return open_store(Repo(self.repo))

    def session(self) -> Filters:
        # No remote to fetch from: a missing object stays missing (the real downloader would
        # look for a remote and find none, in a git subprocess per checkpoint).
        return Filters(RepoContext(Repo(self.repo), workers=2, downloader=lambda refs: None))

    def audit(self) -> OpenAudit:
        return OpenAudit([self.sentinel])

    def objects(self) -> set[Path]:
        root = self.store.objects_dir
        return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()

    def git_env(self) -> dict[str, str]:
        return dict(self.env.env)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("fuzz"))
    # In-process filtering runs git too: give it the sandbox's isolated HOME and config.
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("GIT_") and not key.startswith("GIT_THETA_FUZZ_"):
                mp.delenv(key)
        for key in ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM"):
            mp.setenv(key, box.env.env[key])
        yield box


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
