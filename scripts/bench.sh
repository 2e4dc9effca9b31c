#!/usr/bin/env bash
# Builds the release server and the benchmark tool, then runs the benchmark against the
# binary (docs/benchmarks.md explains every figure).
#
#   scripts/bench.sh              full run (~10 min); figures go into docs/benchmarks.md
#   scripts/bench.sh --quick      smoke run (~2 min); report in docs/benchmarks-latest.md
#   scripts/bench.sh --help       every option (scenarios, durations, sizes, work dir)
#
# Run it on an otherwise idle machine: the load generator shares the CPUs with the server.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p callgate -p callgate-bench

args=("$@")
case " $* " in
  *" --out"* | *" --quick"* | *" --help"* | *" -h "*) ;;
  *) args+=(--out docs/benchmarks.md) ;;
esac
exec target/release/callgate-bench --server-bin target/release/callgate "${args[@]}"
