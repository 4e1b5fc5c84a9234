#!/usr/bin/env bash
# Lint and type check with the pinned versions (pyproject.toml `dev` extra); CI runs this
# before the tests. The same checks run as pre-commit hooks (.pre-commit-config.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
ruff check .
ruff format --check .
mypy git_theta
