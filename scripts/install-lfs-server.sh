#!/usr/bin/env bash
# Install giftless (a Git LFS server) for the transfer tests and benchmark, in a virtualenv of
# its own so its pins never touch the project's environment.
#
# The 0.6.2 wheel declares no dependencies, so they are listed here, after its
# requirements/main.in (storage backends other than local disk and S3 left out). PyJWT must stay
# below 2.10: from 2.10 on the pre-authorised upload tokens giftless signs fail validation ("sub"
# must be a string) and every upload gets 401. waitress serves it with HTTP/1.1 keep-alive.
#
# Usage: scripts/install-lfs-server.sh [VENV]   (default: .lfs-server/venv; tests look there,
# or at $GIT_THETA_LFS_SERVER_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.lfs-server/venv}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  "giftless==0.6.2" \
  "figcan==0.0.*" \
  "flask~=2.3" \
  "flask-marshmallow~=0.15" \
  "marshmallow>=3.18,<4" \
  "flask-classful~=0.16" \
  "werkzeug~=3.0" \
  "webargs~=8.3" \
  "pyyaml~=6.0" \
  "PyJWT>=2.4,<2.10" \
  "typing-extensions~=4.9" \
  "python-dotenv~=1.0" \
  "python-dateutil~=2.8" \
  "cryptography>=3.2" \
  "cachetools~=5.3" \
  "boto3~=1.34" \
  "waitress>=3.0"
"$VENV/bin/python" -c "import giftless.app, jwt, waitress"
echo "giftless installed in $VENV"
