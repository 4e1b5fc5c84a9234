#!/usr/bin/env bash
# Install what git-theta needs on a fresh Debian machine: git, git-lfs, the CPU build of
# PyTorch (optional extra; installed first so no CUDA build is pulled), the package itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# man: `git theta --help` is `man git-theta` (tests/end_to_end/test_help.py).
if ! command -v git >/dev/null || ! command -v git-lfs >/dev/null || ! command -v man >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq git git-lfs man-db >/dev/null
fi
# First, so the package's torch range is met and nothing pulls a CUDA build. These machines'
# pip finds the CPU wheel locally; elsewhere PyPI's Linux wheel is the CUDA build, and README
# says how to take the CPU one from PyTorch's own index instead.
python3 -m pip install -q --disable-pip-version-check "torch==2.13.0"
python3 -m pip install -q --disable-pip-version-check -e ".[torch,test]"
# An editable install leaves the sources uncompiled, and where PYTHONDONTWRITEBYTECODE is set
# every git-theta process would compile them again (~60 ms each; git starts one per filtered
# command, the tests thousands). A wheel install compiles them the same way.
python3 -m compileall -q git_theta
# The Git LFS server (giftless) the transfer tests and benchmark run against, in its own venv.
bash scripts/install-lfs-server.sh
