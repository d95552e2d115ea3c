"""Spawned agents: what they inherit and which files they may run (chapter 07, 7.3.1.6 and 7.3.1.7).

- Environment: a secret in the gateway's environment does not reach an agent unless its
  template says `inheritEnvironment: true`; a variable the template lists does.
- Pinning: a template whose `sha256` (or `scriptSha256`) is not its file's is not started,
  stays in ERROR with the reason in `agents/list`, and is not restarted; the right hash starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from sbwire import RpcSession

AGENT_START = 60

# A stdio MCP server (standard library only) with one tool that answers with its environment.
ENVIRON_AGENT = r'''
import json, os, sys

def send(message):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    message = json.loads(line)
    method, id_ = message.get("method"), message.get("id")
    if id_ is None:
        continue
    if method == "initialize":
        send({"id": id_, "result": {"protocolVersion": message["params"]["protocolVersion"],
                                    "capabilities": {"tools": {}}, "serverInfo": {"name": "environ", "version": "1"}}})
    elif method == "tools/list":
        send({"id": id_, "result": {"tools": [{"name": "environ", "inputSchema": {"type": "object"}}]}})
    elif method == "tools/call":
        send({"id": id_, "result": {"content": [{"type": "text", "text": json.dumps(dict(os.environ))}]}})
    elif method == "ping":
        send({"id": id_, "result": {}})
    else:
        send({"id": id_, "error": {"code": -32601, "message": "Method not found: " + str(method)}})
'''

SECRET = "SWITCHBOARD_TEST_SECRET"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def gateway(start_gateway, tmp_path):
    """gateway(config dict, env=None) -> (a gateway on TCP, a session on it)."""
    sessions = []

    def start(config: dict, env: dict | None = None):
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps(config, indent=2))
        gw = start_gateway("tcp", extra=["--config", str(path)], env=env)
        session = RpcSession.connect(gw.tcp)
        sessions.append(session)
        return gw, session

    yield start
    for session in sessions:
        session.close()


def poll(fetch, check, what: str, timeout: float = AGENT_START):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so within {timeout}s; last: {json.dumps(value)[:2000]}")
        time.sleep(0.05)


def agent_entry(session: RpcSession, template: str) -> dict | None:
    agents = session.result("agents/list", {})["agents"]
    return next((a for a in agents if a["agentId"].startswith(template + "#")), None)


def environ_of_agent(session: RpcSession) -> dict:
    poll(lambda: [t["name"] for t in session.result("tools/list")["tools"]], lambda names: "environ" in names,
         "the environ agent's tool listed")
    result = session.result("tools/call", {"name": "environ", "arguments": {}})
    return json.loads(result["content"][0]["text"])


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- agents' environment


@pytest.mark.parametrize("inherit", [False, True], ids=["clean", "inheritEnvironment"])
def test_a_spawned_agent_sees_only_its_base_and_listed_environment(gateway, tmp_path, inherit):
    script = tmp_path / "environ_agent.py"
    script.write_text(ENVIRON_AGENT)
    template = {"command": sys.executable, "args": [str(script)], "env": {"LISTED_VARIABLE": "listed"}}
    if inherit:
        template["inheritEnvironment"] = True
    env = {**os.environ, SECRET: "do-not-leak", "LANG": "C.UTF-8"}
    gw, session = gateway({"agents": {"environ": template}}, env=env)
    seen = environ_of_agent(session)
    assert seen["LISTED_VARIABLE"] == "listed"
    assert seen["PATH"] == os.environ["PATH"] and seen["LANG"] == "C.UTF-8"
    if inherit:
        assert seen[SECRET] == "do-not-leak"
    else:
        assert SECRET not in seen
        allowed = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR", "LISTED_VARIABLE"}
        # The interpreter may add its own (LC_CTYPE when it coerces the C locale).
        assert set(seen) - allowed <= {"LC_CTYPE"}, sorted(set(seen) - allowed)


# --------------------------------------------------------------------------- executable pinning


@pytest.mark.parametrize("pin", ["sha256", "scriptSha256"])
def test_a_wrongly_pinned_template_is_refused_and_stays_down(gateway, tmp_path, pin):
    script = tmp_path / "environ_agent.py"
    script.write_text(ENVIRON_AGENT)
    wrong = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    pinned_file = sys.executable if pin == "sha256" else str(script)
    kind = "executable" if pin == "sha256" else "script"
    template = {"command": sys.executable, "args": [str(script)], pin: wrong,
                "restart": {"policy": "always", "initialBackoffSeconds": 0.05}}
    gw, session = gateway({"agents": {"pinned": template}})
    entry = poll(lambda: agent_entry(session, "pinned"), lambda a: a is not None and a["currentState"] == "ERROR",
                 "the pinned agent in ERROR")
    assert entry["error"] == f"{kind} {pinned_file} has sha256 {sha256_of(pinned_file)}, the template pins {wrong}", entry
    gw.wait_log(r"agent pinned#1 is not started: .* has sha256 ")
    # Not started again, not even with a 50 ms back-off.
    time.sleep(1)
    assert sum("is not started" in line for line in gw.stderr_lines) == 1, gw.stderr_text()
    assert not any("restarting in" in line for line in gw.stderr_lines), gw.stderr_text()
    assert agent_entry(session, "pinned")["currentState"] == "ERROR"


def test_a_rightly_pinned_template_starts(gateway, tmp_path):
    script = tmp_path / "environ_agent.py"
    script.write_text(ENVIRON_AGENT)
    template = {"command": sys.executable, "args": [str(script)],
                "sha256": sha256_of(sys.executable), "scriptSha256": sha256_of(script).upper()}
    gw, session = gateway({"agents": {"pinned": template}})
    assert "PATH" in environ_of_agent(session)
    assert agent_entry(session, "pinned")["currentState"] in ("IDLE", "BUSY")
