#!/usr/bin/env bash
# Benchmarks (never part of the tests): ping round trips through a release build of switchboard
# over TCP and stdio, sequentially and with 64 in flight. Extra arguments go to switchboard-bench
# (see --help). Figures and how to read them: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product switchboard
swift build -c release --product switchboard-bench
exec .build/release/switchboard-bench --binary .build/release/switchboard "$@"
