#!/usr/bin/env bash
# Benchmarks (never part of the tests), on release builds:
#   1. ping round trips through switchboard over TCP and stdio, sequential and 64 in flight;
#   2. tools/call of an echo tool on an MCP server built on the official Python SDK: directly over
#      its stdio, and through switchboard over TCP, side by side.
# With arguments, runs only `switchboard-bench ARGS...` (see --help). Figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
swift build -c release --product switchboard
swift build -c release --product switchboard-bench
bench=.build/release/switchboard-bench
gateway=$PWD/.build/release/switchboard
if [ $# -gt 0 ]; then
    exec "$bench" "$@"
fi
echo "== ping"
"$bench" ping --binary "$gateway"
echo
echo "== tools/call: direct against through switchboard"
"$bench" tools --binary "$gateway" --agent "$PWD/.venv/bin/python $PWD/scripts/bench/sdk_echo_server.py" \
    --requests 20000 --sequential-requests 5000 --warmup 1000
