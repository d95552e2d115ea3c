#!/usr/bin/env bash
# Benchmarks of switchboard, never part of the tests, on release builds. Figures and how to read
# them: docs/benchmarks.md.
#
#   scripts/bench.sh                  the suite, about 3 minutes on 2 cores after its set-up: ping, peers, ceiling,
#                                     tasks, patterns, capacity, events; then one table of the
#                                     headline figures, each with its ratio against its peer or
#                                     the direct path
#   scripts/bench.sh NAME [ARGS...]   one part, ARGS added to `switchboard-bench NAME`:
#       ping       ping, memory/set and memory/get round trips over TCP and stdio
#       peers      tools/call to the Python SDK's echo server: directly, through switchboard and
#                  through FastMCP's proxy (the SDK's client), and directly and through switchboard
#                  (the Swift client)
#       ceiling    tools/call to a minimal C echo agent over stdio and TCP: the gateway's ceiling
#       tasks      tasks/submit + tasks/result, window and 10,000 queued, against tools/call
#       patterns   tasks/scatter over 8 agents and a 3-stage tasks/pipeline against direct calls
#       capacity   memory per idle attached agent and per queued task; 10,000 agents, 100,000 tasks
#       events     events/publish to 1 and 100 subscribers, against Redis pub/sub
#       profile    instructions per relayed tools/call by function (valgrind's callgrind)
#       tls, routing, workflow, queue, replicas   the other subcommands (scripts/bench/redis.sh runs
#                  the last two)
#   scripts/bench.sh --OPTION ...     switchboard-bench ping --OPTION ... (e.g. --transport tcp)
#   scripts/bench.sh setup            only install and build what the benchmarks need
#
# Before measuring it installs what it needs on Debian (scripts/setup.sh; then valgrind,
# redis-server, a C compiler, python3-venv), makes its own Python virtual environment with the
# peers pinned in scripts/bench/requirements.txt (.build/bench/venv), compiles the C echo agent
# (scripts/bench/echo_agent.c), builds switchboard and switchboard-bench in release mode, and
# raises the open-files limit. Everything it makes is under .build/bench; each run's output is
# also kept there (results-DATE.log, summary-DATE.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.build/bench
mkdir -p "$out"

setup() {
    scripts/setup.sh
    local packages=(valgrind redis-server binutils)
    command -v cc >/dev/null 2>&1 || packages+=(gcc libc6-dev)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
    local missing=()
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bench: installing ${missing[*]}"
        local sudo_cmd=()
        [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi

    local requirements=scripts/bench/requirements.txt venv=$out/venv
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/.requirements"; then
        echo "bench: creating $venv from $requirements"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/.requirements"
    fi

    cc -O2 -Wall -o "$out/echo_agent" scripts/bench/echo_agent.c
    cc -O2 -Wall -shared -fPIC -o "$out/sigsuspend_shim.so" scripts/bench/sigsuspend_shim.c
    swift build -c release --product switchboard
    swift build -c release --product switchboard-bench

    # Each idle agent is an open file in the gateway and in the benchmark: allow 10,000 of them.
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

setup
[ "${1:-}" = setup ] && exit 0

bench=$root/.build/release/switchboard-bench
gateway=$root/.build/release/switchboard
python=$out/venv/bin/python
stamp=$(date -u +%Y%m%d-%H%M%S)
summary=$out/summary-$stamp.tsv
log=$out/results-$stamp.log
: >"$summary"
exec > >(tee -a "$log") 2>&1

if [ "${1:-}" != "" ] && [ "${1#-}" != "$1" ]; then
    exec "$bench" ping --binary "$gateway" "$@"
fi

part() {
    local name=$1
    shift
    echo
    echo "== $name ($(date -u +%H:%M:%S) UTC)"
    case $name in
    ping) "$bench" ping --binary "$gateway" --methods ping,memory/set,memory/get --summary "$summary" "$@" ;;
    peers)
        "$bench" peers --binary "$gateway" --python "$python" --scripts scripts/bench \
            --requests 20000 --sequential-requests 5000 --warmup 1000 --summary "$summary" "$@" ;;
    ceiling) "$bench" ceiling --binary "$gateway" --agent "$out/echo_agent" --summary "$summary" "$@" ;;
    tasks) "$bench" tasks --binary "$gateway" --summary "$summary" "$@" ;;
    patterns) "$bench" patterns --binary "$gateway" --agent "$out/echo_agent" --summary "$summary" "$@" ;;
    capacity)
        "$bench" capacity --binary "$gateway" --python "$python" --scripts scripts/bench --summary "$summary" "$@" ;;
    events) "$bench" events --binary "$gateway" --summary "$summary" "$@" ;;
    profile)
        # valgrind 3.19 reads neither the DWARF of a Swift 6 binary nor survives libdispatch's
        # sigsuspend: a copy without debug information (symbols stay) and the shim.
        objcopy --strip-debug "$gateway" "$out/switchboard-nodebug"
        "$bench" profile --binary "$out/switchboard-nodebug" --agent "$out/echo_agent" \
            --preload "$out/sigsuspend_shim.so" --output "$out/profile" --summary "$summary" "$@" ;;
    tls | routing | workflow) "$bench" "$name" --binary "$gateway" "$@" ;;
    queue | replicas) exec scripts/bench/redis.sh ;;
    *)
        echo "bench: unknown part $name (see the top of scripts/bench.sh)" >&2
        exit 2 ;;
    esac
}

if [ $# -gt 0 ]; then
    part "$@"
else
    echo "switchboard benchmarks, $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%dT%H:%MZ)"
    for name in ping peers ceiling tasks patterns capacity events; do part "$name"; done
fi
echo
echo "== summary (also in $summary; the whole output in $log)"
"$bench" summary "$summary"
