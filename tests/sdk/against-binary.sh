#!/usr/bin/env bash
# Starts the real `callgate` binary on its embedded default (fresh data dir, first-start
# bootstrap), reads the printed admin key and runs the dograh-sdk==0.1.8 script against it.
#
# Usage: tests/sdk/against-binary.sh [path/to/callgate] [venv dir]
#   (defaults: target/debug/callgate, /tmp/callgate-sdk-venv)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${1:-$HERE/../../target/debug/callgate}"
VENV="${2:-/tmp/callgate-sdk-venv}"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"

"$BIN" serve --data-dir "$WORK/data" --bind "127.0.0.1:$PORT" >"$WORK/out.txt" 2>"$WORK/err.txt" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

for _ in $(seq 1 100); do
    if grep -q 'cg_' "$WORK/out.txt" 2>/dev/null; then break; fi
    if ! kill -0 "$PID" 2>/dev/null; then cat "$WORK/err.txt"; echo "callgate exited early"; exit 1; fi
    sleep 0.1
done
KEY="$(grep -o 'cg_[A-Za-z0-9_-]*' "$WORK/out.txt" | head -1)"
if [[ -z "$KEY" ]]; then echo "no admin key printed"; cat "$WORK/out.txt"; exit 1; fi

CALLGATE_URL="http://127.0.0.1:$PORT" CALLGATE_API_KEY="$KEY" "$HERE/run.sh" "$VENV"
