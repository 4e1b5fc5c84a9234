#!/usr/bin/env bash
# The test command: installs everything, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One worker per CPU (pytest-xdist): on a 2-core machine the suite takes 7.5 min instead of
# 11.5; every test has its own temp repos, HOME and server port.
python3 -m pytest -q -n auto "$@"
