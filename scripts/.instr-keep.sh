#!/usr/bin/env bash
# Counts the CPU instructions the server spends per accepted trigger, with valgrind's
# callgrind, under the bench's trigger load (4 connections: valgrind runs the server ~50x
# slower). Requests per second on a shared 2-CPU VM move by ±10 % from run to run; this
# count moves by well under 1 %, so a change worth a few percent shows (docs/benchmarks.md,
# "Instructions per trigger").
#
#   scripts/instructions.sh                 build, measure target/release/callgate
#   scripts/instructions.sh BIN [BIN...]    measure these server binaries one after another
#
# Needs valgrind (Debian: apt-get install valgrind) and python3. ~1 min per binary.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in valgrind callgrind_control callgrind_annotate python3; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool not found (Debian: apt-get install valgrind python3)" >&2; exit 1; }
done

if [ $# -eq 0 ]; then
  :
  set -- target/release/callgate
else
  :
fi

for bin in "$@"; do
  bin=$(realpath "$bin")
  work=$(mktemp -d)
  # The bench starts the server through this wrapper; counting starts switched off, so the
  # start-up and the first requests (lazy tables, caches) are left out.
  cat >"$work/server.sh" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --dump-instr=no \
  --callgrind-out-file=$work/callgrind.out "$bin" "\$@"
EOF
  chmod +x "$work/server.sh"
  target/release/callgate-bench --server-bin "$work/server.sh" --only trigger \
    --connections 4 --warmup 20 --duration 20 --out "$work/report.md" >"$work/bench.log" 2>&1 &
  bench=$!
  # Switch counting on inside the warm-up: the server is up (a few seconds under valgrind)
  # and has served a few hundred triggers.
  pid=""
  for _ in $(seq 1 60); do
    sleep 1
    pid=$(sed -n 's/^callgate pid \([0-9]*\) .*/\1/p' "$work/bench.log")
    [ -n "$pid" ] && break
  done
  [ -n "$pid" ] || { echo "instructions.sh: the server did not start; see $work/bench.log" >&2; exit 1; }
  sleep 12
  callgrind_control --instr=on "$pid" >/dev/null
  wait "$bench" || { echo "instructions.sh: the bench failed; see $work/bench.log" >&2; exit 1; }
  echo "== $bin"
  python3 scripts/instructions.py "$work/callgrind.out"
  echo kept $work
done
