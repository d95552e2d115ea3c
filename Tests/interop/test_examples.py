"""The example clients in examples/clients run against a real gateway."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from sbwire import REPO

EXAMPLES = REPO / "examples" / "clients"
TIMEOUT = 60


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=EXAMPLES, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def check_summary(out: str, listener_url: str) -> None:
    lines = out.splitlines()
    assert "ping: ok" in lines, out
    assert "tools/list: 0 tool(s) []" in lines, out
    status = [line for line in lines if line.startswith("gateway/status: ")]
    assert len(status) == 1, out
    assert status[0].startswith("gateway/status: switchboard 0.1.0, up "), out
    assert re.search(r"\b\d+ open / \d+ accepted connection\(s\)", status[0]), out
    assert listener_url in status[0], out


@pytest.fixture(params=["tcp", "unix"])
def listener(request, gateway_both):
    return gateway_both.endpoint(request.param).url


def test_python_raw_client(listener):
    check_summary(run([sys.executable, "python_raw_client.py", listener]), listener)


def test_node_client(listener):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed")
    check_summary(run([node, "node_client.mjs", listener]), listener)


@pytest.mark.parametrize("tool", ["socat", "nc"])
def test_shell_nc(listener, tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed")
    out = run(["sh", "shell_nc.sh", listener], env={**os.environ, "SB_TOOL": tool})
    replies = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert replies[1] == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert replies[2] == {"jsonrpc": "2.0", "id": 2, "result": {"tools": []}}
    assert replies[3]["result"]["server"] == {"name": "switchboard", "version": "0.1.0"}
    assert listener in replies[3]["result"]["listeners"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_python_mcp_client_spawning_stdio(sb_bin, mode):
    cmd = [sys.executable, "python_mcp_client.py", "--switchboard", str(sb_bin)]
    if mode == "legacy":
        cmd.append("--legacy")
    out = run(cmd)
    version = "2025-11-25" if mode == "legacy" else "2026-07-28"
    lines = out.splitlines()
    assert lines[0] == f"connected: switchboard 0.1.0, protocol {version}", out
    assert "ping: ok" in lines and "tools/list: 0 tool(s) []" in lines, out
    assert any(line.startswith("gateway/status: switchboard 0.1.0, backend embedded") for line in lines), out


def test_python_mcp_client_connect(listener):
    if shutil.which("socat") is None:
        pytest.fail("socat is not installed")
    out = run([sys.executable, "python_mcp_client.py", "--connect", listener])
    assert out.splitlines()[0] == "connected: switchboard 0.1.0, protocol 2026-07-28", out
    assert "tools/list: 0 tool(s) []" in out.splitlines(), out
