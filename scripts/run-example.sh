#!/usr/bin/env bash
# Builds Switchboard (release) and runs it with the example configuration on the embedded
# backend: TCP on 127.0.0.1:7400 and a Unix socket. Extra arguments go to `switchboard serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product switchboard
exec .build/release/switchboard serve --config examples/configs/gateway.yaml "$@"
