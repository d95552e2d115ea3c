#!/usr/bin/env bash
# Redis benchmarks (never part of the tests), on release builds, against a redis-server of their own
# (a free loopback port, a scratch directory, no persistence), stopped at the end:
#   1. `switchboard-bench queue`: RedisTaskBoard submit → claim → finish, against redis-benchmark
#      running the same Lua scripts, sequential and 64 in flight, with the ratio;
#   2. `switchboard-bench replicas` with 1, 2 and 3 replicas: tasks through every replica, and
#      tools/call across replicas against the agent's own replica.
# Then a compact table of all of it. More options for each subcommand come from the environment:
# QUEUE_ARGS and REPLICAS_ARGS (e.g. QUEUE_ARGS="--tasks 20000" REPLICAS_ARGS="--tasks 5000").
# Figures: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    scripts/setup.sh --test
fi
swift build -c release --product switchboard
swift build -c release --product switchboard-bench
bench=.build/release/switchboard-bench
gateway=$PWD/.build/release/switchboard

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no --loglevel warning \
    >"$work/redis.log" 2>&1 &
redis_pid=$!
stop_redis() {
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap stop_redis EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$port/0"
echo "redis-server $(redis-server --version | grep -oE 'v=[^ ]+' | cut -d= -f2) on 127.0.0.1:$port (no persistence); $(nproc) cores"

echo
echo "== queue: RedisTaskBoard against redis-benchmark, same scripts"
# shellcheck disable=SC2086
"$bench" queue --redis "$url" ${QUEUE_ARGS:-} | tee "$work/queue.txt"

for replicas in 1 2 3; do
    redis-cli -p "$port" flushdb >/dev/null
    echo
    echo "== replicas: $replicas"
    # shellcheck disable=SC2086
    "$bench" replicas --binary "$gateway" --redis "$url" --replicas "$replicas" ${REPLICAS_ARGS:-} | tee "$work/replicas-$replicas.txt"
done

# The lines of the markdown table that follows a title line in a file.
table() { awk -v title="$2" '$0 == title { on = 1; next } on && /^\|/ { print; next } on { exit }' "$1"; }

echo
echo "== summary"
echo
echo "queue (RedisTaskBoard / redis-benchmark, same scripts, same server, one run):"
awk '/^\| operation /{ on = 1 } on && /^\|/' "$work/queue.txt"
echo
echo "replicas, tasks:"
table "$work/replicas-1.txt" "tasks table:"
for replicas in 2 3; do table "$work/replicas-$replicas.txt" "tasks table:" | tail -n +3; done
echo
echo "replicas, tools/call across replicas:"
table "$work/replicas-2.txt" "calls table:"
table "$work/replicas-3.txt" "calls table:" | tail -n +3
