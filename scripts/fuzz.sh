#!/usr/bin/env bash
# Fuzzes the framing and JSON path (Sources/FramingFuzz) with libFuzzer.
#
#   scripts/fuzz.sh                 a short run: 60 s (what the test command runs)
#   scripts/fuzz.sh --runs 1000000  a long run: a million inputs
#   scripts/fuzz.sh --time 600      ten minutes
#
# The corpus grows in .build-fuzz/corpus (not committed); Tests/fuzz/framing-seeds holds the
# seeds, and an input that crashes is written to .build-fuzz/crash-* with the property it broke.
# Replay one with an ordinary build: swift run framing-fuzz FILE.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=60)
case "${1:-}" in
    --runs) limit=(-runs="$2") ;;
    --time) limit=(-max_total_time="$2") ;;
    "") ;;
    *) echo "usage: scripts/fuzz.sh [--runs N | --time SECONDS]" >&2; exit 2 ;;
esac

scratch=.build-fuzz
swift build -c release --scratch-path "$scratch" --product framing-fuzz \
    -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING -Xswiftc -use-ld=lld 2>&1 | tail -n 3
binary=$(swift build -c release --scratch-path "$scratch" --show-bin-path)/framing-fuzz

mkdir -p "$scratch/corpus"
# -rss_limit_mb: the gateway's path must stay small even for hostile input. The Swift runtime's
# own crash report is turned off so that libFuzzer catches the crash and writes the input.
SWIFT_BACKTRACE=enable=no "$binary" "${limit[@]}" -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$scratch/" "$scratch/corpus" Tests/fuzz/framing-seeds
