#!/usr/bin/env bash
# Installs what building, running and testing Switchboard need on Debian (run as root, or with
# sudo available). Idempotent: a second run installs nothing.
#
#   scripts/setup.sh          build dependencies only (libssl-dev, libhiredis-dev)
#   scripts/setup.sh --test   also the test tools (redis-server, socat, nc, node, headless
#                             Chromium and its WebDriver for the console's tests) and the
#                             Python virtual environments in .venv and .venv-mcp-proxy
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=false
[ "${1:-}" = "--test" ] && want_test=true

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: the Swift toolchain (6.0 or later) is not on PATH; install it first (see README)" >&2
    exit 1
fi

# bubblewrap builds the sandboxes of agents that ask for one (a template's `sandbox`).
packages=(libssl-dev libhiredis-dev pkg-config bubblewrap)
if $want_test; then
    packages+=(redis-server socat netcat-openbsd openssl chromium chromium-driver fonts-dejavu-core)
    command -v node >/dev/null 2>&1 || packages+=(nodejs)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
fi

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if $want_test; then
    requirements=Tests/interop/requirements.txt
    stamp=.venv/.requirements
    if [ ! -x .venv/bin/python ] || ! cmp -s "$requirements" "$stamp"; then
        echo "setup: creating .venv from $requirements"
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$stamp"
    fi
    proxy_requirements=Tests/interop/requirements-mcp-proxy.txt
    proxy_stamp=.venv-mcp-proxy/.requirements
    if [ ! -x .venv-mcp-proxy/bin/mcp-proxy ] || ! cmp -s "$proxy_requirements" "$proxy_stamp"; then
        echo "setup: creating .venv-mcp-proxy from $proxy_requirements"
        python3 -m venv .venv-mcp-proxy
        .venv-mcp-proxy/bin/pip install --quiet --disable-pip-version-check -r "$proxy_requirements"
        cp "$proxy_requirements" "$proxy_stamp"
    fi
fi
