#!/usr/bin/env bash
# Run the dograh-sdk==0.1.8 compatibility script against an already-running callgate.
#
# Usage: CALLGATE_URL=http://127.0.0.1:8080 CALLGATE_API_KEY=... tests/sdk/run.sh [VENV_DIR]
#   VENV_DIR defaults to /tmp/callgate-sdk-venv (reused when it already has the right SDK).
set -euo pipefail

SDK_SPEC="dograh-sdk==0.1.8"
VENV_DIR="${1:-/tmp/callgate-sdk-venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

: "${CALLGATE_URL:?set CALLGATE_URL, e.g. http://127.0.0.1:8080}"
: "${CALLGATE_API_KEY:?set CALLGATE_API_KEY}"

if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    echo "creating venv at $VENV_DIR"
    "$PYTHON" -m venv "$VENV_DIR"
fi

if ! "$VENV_DIR/bin/python" - <<'PY' >/dev/null 2>&1
from importlib.metadata import version
raise SystemExit(0 if version("dograh-sdk") == "0.1.8" else 1)
PY
then
    echo "installing $SDK_SPEC into $VENV_DIR"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$SDK_SPEC"
fi

exec "$VENV_DIR/bin/python" "$HERE/test_dograh_sdk.py"
