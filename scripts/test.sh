#!/usr/bin/env bash
# Runs every test: the Swift unit and socket tests, the conformance suite over stdio, TCP, a Unix
# socket and HTTP (/mcp), the interop tests (the official MCP SDK, raw sockets, stdio, example
# clients) and the protocol-spec schema check, and a minute of fuzzing the framing and JSON path.
# Sets up what it needs first.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test || exit 1
logs=$(mktemp -d)
failed_stages=()
passed=0
failed=0

stage() {  # stage NAME COMMAND... : runs a stage, keeps its log, counts its tests
    local name=$1
    shift
    echo "=== $name"
    "$@" 2>&1 | tee "$logs/$name.log"
    local status=${PIPESTATUS[0]}
    [ "$status" -eq 0 ] || failed_stages+=("$name")
    return 0
}

count() {  # adds the counts a stage printed
    local p=$1 f=$2
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
}

swift build --build-tests 2>&1 | tail -n 5
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "build failed"
    exit 1
fi
binary=$(swift build --show-bin-path)/switchboard

stage swift-test swift test --skip-build
# Swift Testing: "Test run with N tests in M suites passed|failed after ... [with K issues]", and a
# "✘ Test NAME(...) failed after ..." line for each failed test.
swift_total=$(grep -o 'Test run with [0-9]* tests' "$logs/swift-test.log" | grep -o '[0-9]*' | head -1)
swift_failed=$(grep -E '^✘ Test .* failed after' "$logs/swift-test.log" | grep -vc '^✘ Test run with')
if [ -z "$swift_total" ]; then
    count 0 1  # no summary: the run itself broke
else
    count $((swift_total - swift_failed)) "$swift_failed"
fi

# The conformance suite against a fresh gateway for each transport (cases leave tasks and agents
# behind; a gateway per run keeps each run independent).
sock_dir=$(mktemp -d)
# Over HTTP each connection of a case is an MCP Streamable HTTP client of /mcp (see
# conformance/README.md, "Over HTTP"); the cases that cannot apply there count as not applicable.
for transport in stdio tcp unix http; do
    case $transport in
        stdio) args=(--stdio "$binary serve --stdio") ;;
        tcp) args=(--spawn "$binary serve --listen tcp://127.0.0.1:0" --tcp auto) ;;
        unix) args=(--spawn "$binary serve --listen unix://$sock_dir/sb.sock" --unix auto) ;;
        http) args=(--spawn "$binary serve --listen http://127.0.0.1:0" --http auto) ;;
    esac
    stage "conformance-$transport" python3 conformance/run.py "${args[@]}"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logs/conformance-$transport.log" | tail -1)
    count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
done

# Access with an auth section (principals, rules, tenants, rate limits, quotas, request tokens):
# its own cases, against a gateway started with their configuration.
stage conformance-access python3 conformance/run.py \
    --spawn "$binary serve --listen tcp://127.0.0.1:0 --config conformance/access-gateway.json" --tcp auto \
    --cases conformance/cases-access
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logs/conformance-access.log" | tail -1)
count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"

# The agents, tasks and coordination cases again, against a replica sharing a fresh redis-server
# (on a free loopback port, in a scratch directory): the shared backend keeps the same contract.
redis_dir=$(mktemp -d)
redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save "" --appendonly no >"$redis_dir/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
stage conformance-redis python3 conformance/run.py \
    --spawn "$binary serve --listen tcp://127.0.0.1:0 --redis redis://127.0.0.1:$redis_port/0" --tcp auto \
    -k agents/ -k tasks/ -k coordination/ -k observability/ -k fleet/
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logs/conformance-redis.log" | tail -1)
count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
kill "$redis_pid" 2>/dev/null
wait "$redis_pid" 2>/dev/null
rm -rf "$redis_dir"

stage interop env SWITCHBOARD_BIN="$binary" .venv/bin/python -m pytest -q Tests/interop
count "$(grep -oE '[0-9]+ passed' "$logs/interop.log" | tail -1 | cut -d' ' -f1)" \
    "$(grep -oE '[0-9]+ failed' "$logs/interop.log" | tail -1 | cut -d' ' -f1)"

stage protocol-spec .venv/bin/python protocol-spec/schema/check_examples.py

# The framing and JSON path under libFuzzer for a minute, from the committed seeds (a crash fails
# the stage and writes its input to .build-fuzz/); scripts/fuzz.sh --runs 1000000 is the long run.
stage fuzz-framing scripts/fuzz.sh --time 60
if grep -q 'Done [0-9]* runs' "$logs/fuzz-framing.log"; then count 1 0; else count 0 1; fi

echo
if [ ${#failed_stages[@]} -gt 0 ]; then
    # What failed, again at the end, where a reader of the tail finds it.
    for name in "${failed_stages[@]}"; do
        echo "--- $name: what failed"
        grep -E '^✘|^FAIL|FAILED|^E   |Fatal error|error:' "$logs/$name.log" | grep -v '^✘ Suite' | head -n 40
    done
    echo "failed stages: ${failed_stages[*]} (logs in $logs)"
    echo "total: $passed passed, $((failed > 0 ? failed : 1)) failed"
    exit 1
fi
echo "total: $passed passed, $failed failed"
