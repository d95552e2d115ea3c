#!/usr/bin/env bash
# MCP tools/call over Streamable HTTP through Switchboard, IBM ContextForge and FastMCP's proxy,
# side by side in one run, the same stdio echo agent behind each (scripts/bench-http.py says what
# is measured and how). Prints a Markdown table; never part of the tests.
#
#   scripts/bench-http.sh [OPTIONS]        set up, then scripts/bench-http.py OPTIONS, e.g.
#       --only switchboard|contextforge|fastmcp   (repeatable)
#       --calls 2000  --concurrency 64  --per-client-calls 100  --duration 60
#       --contextforge-stateless                  ContextForge's default sessions instead
#   scripts/bench-http.sh setup            only set up
#
# Set-up, each step skipped when already done:
#   - switchboard in release mode (swift build -c release --product switchboard), unless
#     SWITCHBOARD_BIN names a binary to measure instead;
#   - .build/bench/venv with FastMCP from scripts/bench/requirements.txt (as scripts/bench.sh);
#   - .build/bench-venvs/contextforge: mcp-contextforge-gateway 1.0.7 and every dependency pinned
#     below, on Python 3.11 or later (CONTEXTFORGE_PYTHON picks the interpreter).
# Logs of the gateways: .build/bench-http/; each run's output: .build/bench-http/results-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.build/bench-http
mkdir -p "$out"

# mcp-contextforge-gateway 1.0.7 and the versions its install resolved to (pip freeze).
contextforge_requirements='
mcp-contextforge-gateway==1.0.7
alembic==1.20.1
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
argon2-cffi==25.1.0
argon2-cffi-bindings==26.2.0
attrs==26.1.0
base58==2.1.1
blessed==1.53.0
brotli==1.2.1
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cpex==0.1.3
cryptography==51.0.1
dnspython==2.9.2
editor==2.0.1
email-validator==2.4.0
fastapi==0.165.0
filelock==3.32.7
gunicorn==27.0.1
h11==0.16.0
h2==4.4.1
hpack==4.2.0
httpcore==1.0.9
httptools==0.9.0
httpx==0.29.0
httpx-sse==0.4.3
hyperframe==6.1.0
idna==3.21
inquirer==3.4.1
Jinja2==3.1.6
jinxed==2.1.1
jq==1.13.0
jsonpath-ng==1.17.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
Mako==1.4.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mcp==1.30.0
mdurl==0.1.2
msgpack==1.2.4
oauthlib==4.0.1
opentelemetry-api==1.45.3
orjson==3.13.0
packaging==26.4
parse==1.22.4
prometheus-fastapi-instrumentator==8.1.0
prometheus_client==0.26.0
psutil==7.2.2
pycparser==3.12
pydantic==2.14.4
pydantic-settings==2.16.3
pydantic_core==2.50.5
PyGithub==2.10.0
Pygments==2.21.0
PyJWT==2.15.1
PyNaCl==1.6.2
python-dotenv==1.2.4
python-json-logger==4.2.0
python-multipart==0.0.34
PyYAML==6.0.4
readchar==4.2.2
redis==8.2.0
referencing==0.37.0
requests==2.34.2
requests-oauthlib==2.0.0
rich==15.0.0
rpds-py==2026.9.1
runs==1.3.0
shellingham==1.5.4
SQLAlchemy==2.1.9
sse-starlette==3.7.1
starlette==1.10.0
starlette-compress==2.0.0
typer==0.29.3
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.55.0
uvloop==0.23.0
watchfiles==1.3.0
wcwidth==0.9.5
websockets==17.4
xmod==1.10.0
zstandard==0.25.0
'

python_at_least_311() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

setup() {
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "bench-http: installing python3-venv"
        local sudo_cmd=()
        [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi

    # FastMCP (and the driver's interpreter): the venv scripts/bench.sh uses.
    local requirements=scripts/bench/requirements.txt venv=$root/.build/bench/venv
    if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/.requirements"; then
        echo "bench-http: creating $venv from $requirements"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/.requirements"
    fi

    # ContextForge, in a venv of its own (its pins clash with the other peers').
    local cf=$root/.build/bench-venvs/contextforge
    if [ ! -x "$cf/bin/mcpgateway" ] || ! cmp -s <(printf '%s' "$contextforge_requirements") "$cf/.requirements"; then
        local python=${CONTEXTFORGE_PYTHON:-}
        if [ -z "$python" ]; then
            for candidate in python3 python3.11 python3.12 python3.13; do
                if command -v "$candidate" >/dev/null && python_at_least_311 "$candidate"; then
                    python=$candidate
                    break
                fi
            done
        fi
        if [ -z "$python" ] || ! python_at_least_311 "$python"; then
            echo "bench-http: ContextForge needs Python 3.11 or later (set CONTEXTFORGE_PYTHON)" >&2
            exit 1
        fi
        echo "bench-http: creating $cf (mcp-contextforge-gateway 1.0.7, $("$python" --version))"
        rm -rf "$cf"
        mkdir -p "$(dirname "$cf")"
        "$python" -m venv "$cf"
        printf '%s' "$contextforge_requirements" >"$cf/requirements.txt"
        timeout 900 "$cf/bin/pip" install --quiet --disable-pip-version-check -r "$cf/requirements.txt"
        printf '%s' "$contextforge_requirements" >"$cf/.requirements"
    fi

    if [ -z "${SWITCHBOARD_BIN:-}" ]; then
        swift build -c release --product switchboard
    fi
}

setup
[ "${1:-}" = setup ] && exit 0

binary=${SWITCHBOARD_BIN:-$root/.build/release/switchboard}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
results=$out/results-$(date -u +%Y%m%d-%H%M%S).md
"$root/.build/bench/venv/bin/python" scripts/bench-http.py \
    --switchboard "$binary" \
    --contextforge-venv "$root/.build/bench-venvs/contextforge" \
    --fastmcp-python "$root/.build/bench/venv/bin/python" \
    --workdir "$out" "$@" | tee "$results"
exit "${PIPESTATUS[0]}"
