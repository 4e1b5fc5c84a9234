"""git_theta/settings.py owns every setting: README's table is generated from it, the defaults
it documents are the ones the code applies, and no module spells a key of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from git_theta import settings
from git_theta.limits import DEFAULT_MAX_OBJECT_BYTES, parse_size
from git_theta.transfer import options
from git_theta.updates.policy import DEFAULT_MAX_CHAIN

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"


def test_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index(START) + len(START) : readme.index(END)]
    assert table == settings.markdown_table(), "run python -m git_theta.settings --markdown"


def test_the_command_prints_the_table():
    out = subprocess.run(
        [sys.executable, "-m", "git_theta.settings", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout == settings.markdown_table()


def test_names_are_unique_and_every_setting_is_documented():
    names = [s.name for s in settings.ALL]
    assert len(names) == len(set(names))
    assert all(s.doc and s.type for s in settings.ALL)
    assert {s.kind for s in settings.ALL} == {"git config", "attribute", "environment"}


def test_documented_defaults_are_the_applied_ones():
    assert int(settings.MAX_UPDATE_CHAIN.default) == DEFAULT_MAX_CHAIN
    assert parse_size(settings.MAX_OBJECT_BYTES.default) == DEFAULT_MAX_OBJECT_BYTES
    assert float(settings.TRANSFER_TIMEOUT.default) == options.DEFAULT_TIMEOUT
    assert parse_size(settings.TRANSFER_MIN_RATE.default) == options.DEFAULT_MIN_RATE
    assert float(settings.TRANSFER_RATE_WINDOW.default) == options.DEFAULT_RATE_WINDOW
    assert int(settings.LFS_CONCURRENT_TRANSFERS.default) == options.DEFAULT_CONCURRENCY
    assert int(settings.LFS_MAX_RETRIES.default) == options.DEFAULT_MAX_RETRIES
    assert float(settings.LFS_MAX_RETRY_DELAY.default) == options.DEFAULT_MAX_RETRY_DELAY


# A key, attribute or variable of ours written as a whole string literal outside settings.py.
_LITERAL = re.compile(r"""["'](theta\.[A-Za-z.]+|theta-[a-z]+|GIT_THETA_[A-Z_]+)["']""")


def test_no_module_spells_a_setting_itself():
    stray = [
        f"{path.relative_to(ROOT)}: {match[1]}"
        for path in sorted((ROOT / "git_theta").rglob("*.py"))
        if path.name != "settings.py"
        for match in _LITERAL.finditer(path.read_text())
    ]
    assert stray == [], "declare it in git_theta/settings.py and read it from there"
