"""First contact: what a user's MCP host, SDK or script meets in the first seconds.

A host lists tools once, right after connecting, and never waits for a notification; a script
submits work the moment the gateway is up. Every test here acts that way against a gateway whose
agents are still starting: real PyPI MCP servers (mcp-server-time, mcp-server-fetch,
mcp-server-git) and small stdio servers of our own that start slowly, print banners, or answer
too much.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from fastmcp import Client as FastMCPClient
from fastmcp.client.transports import StdioTransport
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from sbwire import REPO, RpcSession, jline, req, switchboard_bin

TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "stdio_tool_server.py"
VENV_BIN = Path(sys.executable).parent

TIME_TOOLS = {"get_current_time", "convert_time"}
FETCH_TOOLS = {"fetch"}
GIT_TOOLS = {
    "git_status", "git_diff_unstaged", "git_diff_staged", "git_diff", "git_commit", "git_add", "git_reset",
    "git_log", "git_create_branch", "git_checkout", "git_show", "git_branch",
}


def tool_server(*args: str, **extra) -> dict:
    return {"command": sys.executable, "args": [str(TOOL_SERVER), *args], **extra}


def pypi_servers() -> dict:
    """Three MCP servers from PyPI, as a user's `mcpServers` file names them."""
    for name in ("mcp-server-time", "mcp-server-fetch", "mcp-server-git"):
        if not (VENV_BIN / name).is_file():
            pytest.fail(f"{name} is not installed next to {sys.executable} (pip install -r Tests/interop/requirements.txt)")
    return {
        "time": {"command": str(VENV_BIN / "mcp-server-time"), "args": ["--local-timezone", "UTC"]},
        "fetch": {"command": str(VENV_BIN / "mcp-server-fetch")},
        "git": {"command": str(VENV_BIN / "mcp-server-git"), "args": ["--repository", str(REPO)]},
    }


@pytest.fixture
def servers_file(tmp_path):
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"mcpServers": pypi_servers()}, indent=2))
    return path


def stdio_args(config: Path) -> list:
    return ["serve", "--stdio", "--config", str(config)]


# --------------------------------------------------------------------------- listing once


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_official_client_lists_once_right_after_connecting_and_sees_every_tool(servers_file, mode):
    async def main():
        server = StdioServerParameters(command=str(switchboard_bin()), args=stdio_args(servers_file))
        async with Client(server, mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert tools == TIME_TOOLS | FETCH_TOOLS | GIT_TOOLS
            # Called at once too, as a host does when the model picks a tool.
            result = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert not result.is_error and '"timezone": "UTC"' in result.content[0].text
            return client.protocol_version

    version = anyio.run(main)
    assert version == ("2025-11-25" if mode == "legacy" else "2026-07-28")


def test_fastmcp_client_lists_once_and_sees_every_tool(servers_file):
    async def main():
        transport = StdioTransport(command=str(switchboard_bin()), args=stdio_args(servers_file))
        async with FastMCPClient(transport) as client:
            tools = {tool.name for tool in await client.list_tools()}
            assert tools == TIME_TOOLS | FETCH_TOOLS | GIT_TOOLS
            status = await client.call_tool("git_status", {"repo_path": str(REPO)})
            assert "branch" in status.content[0].text.lower()

    anyio.run(main)


def test_a_modern_list_made_while_agents_start_says_to_look_again_soon(start_gateway, tmp_path):
    # A server that takes longer to start than the gateway waits: the list comes without it, and
    # its ttlMs is short so that the client looks again soon.
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({
        "readiness": {"waitSeconds": 0.5},
        "agents": {"slow": tool_server("--tool", "late", "--start-delay", "5")},
    }))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        meta = {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
        early = rpc.result("tools/list", meta)
        assert early["tools"] == [] and early["ttlMs"] <= 1000
        agents = rpc.result("agents/list")["agents"]
        assert [(a["agentId"], a["currentState"]) for a in agents] == [("slow#1", "STARTING")]


# --------------------------------------------------------------------------- work submitted at once


def test_a_thousand_tasks_submitted_the_instant_the_gateway_starts_all_complete(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {
        "worker": tool_server("--tool", "work", "--start-delay", "1.5", instances=2, maxConcurrency=32),
    }}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    sock = gateway.tcp.connect()
    reader = sock.makefile("rb")
    count = 1000
    sock.sendall(b"".join(jline(req("tasks/submit", n, {"tool": "work", "arguments": {"text": str(n)}})) for n in range(count)))
    submitted = [json.loads(reader.readline()) for _ in range(count)]
    task_ids = {reply["id"]: reply["result"]["taskId"] for reply in submitted}
    assert len(task_ids) == count, [r for r in submitted if "error" in r][:3]
    sock.sendall(b"".join(jline(req("tasks/result", f"r{n}", {"taskId": task_ids[n]})) for n in range(count)))
    results = [json.loads(reader.readline()) for _ in range(count)]
    failed = [r for r in results if "error" in r]
    assert not failed, failed[:3]
    assert sorted(r["result"]["content"][0]["text"].split(":")[1] for r in results) == sorted(str(n) for n in range(count))
    sock.close()


def test_a_call_made_while_its_agent_starts_waits_for_it(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {"slow": tool_server("--tool", "late", "--label", "slow", "--start-delay", "1.5")}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        answer = rpc.result("tools/call", {"name": "late", "arguments": {"text": "hi"}})
        assert answer["content"][0]["text"] == "slow:hi"
        refused = rpc.call("tools/call", {"name": "never-offered", "arguments": {}})
        assert refused["error"]["code"] == -32602 and "never-offered" in refused["error"]["message"]


WORKFLOW = """\
workflowName: slow-step
version: "1"
inputs:
  gate: {type: string}
steps:
  - id: first
    type: agent_task
    tool: work
    input: {text: "one", gate: "${inputs.gate}"}
  - id: second
    type: agent_task
    taskType: work
    taskData: {text: "${steps.first.result.content[0].text}"}
    dependencies: [first]
"""


def test_a_gateway_killed_during_an_agent_task_resumes_it_after_restart_and_completes(start_gateway, tmp_path):
    (tmp_path / "slow-step.yaml").write_text(WORKFLOW)
    calls = tmp_path / "calls.log"
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({
        "agents": {"worker": tool_server("--tool", "work", "--label", "w", "--start-delay", "1", "--calls-log", str(calls))},
        "workflows": {"stateDirectory": str(tmp_path / "state"), "definitions": [str(tmp_path / "slow-step.yaml")]},
    }))
    gate = tmp_path / "gate"
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        execution = rpc.result("workflows/execute", {"workflowName": "slow-step", "inputs": {"gate": str(gate)}})["executionId"]
        # The first step's call has reached the agent (it waits at the gate): kill the gateway.
        deadline = time.monotonic() + 30
        while not (calls.exists() and calls.read_text().strip()):
            assert time.monotonic() < deadline, "the agent never got the first step's call"
            time.sleep(0.05)
    gateway.kill()
    gate.write_text("open")

    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        deadline = time.monotonic() + 60
        while True:
            status = rpc.result("workflows/status", {"executionId": execution})
            if status["status"] not in ("PENDING", "RUNNING"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert status["status"] == "COMPLETED", status
        assert status["stepResults"]["second"]["result"]["content"][0]["text"] == "w:w:one"


# --------------------------------------------------------------------------- stable names


def test_a_tool_name_once_listed_keeps_naming_the_same_tool(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {
        "fast": tool_server("--tool", "sleepy", "--label", "fast"),
        "slow": tool_server("--tool", "sleepy", "--label", "slow", instances=0),
    }}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        rpc.initialize()
        assert [t["name"] for t in rpc.result("tools/list")["tools"]] == ["sleepy"]
        rpc.result("agents/scale", {"template": "slow", "instances": 1})
        rpc.wait_notification("notifications/tools/list_changed", timeout=30)
        assert [t["name"] for t in rpc.result("tools/list")["tools"]] == ["sleepy", "slow__sleepy"]
        assert rpc.result("tools/call", {"name": "sleepy", "arguments": {"text": "a"}})["content"][0]["text"] == "fast:a"
        assert rpc.result("tools/call", {"name": "slow__sleepy", "arguments": {"text": "b"}})["content"][0]["text"] == "slow:b"


def test_an_ambiguous_bare_name_is_refused_with_its_candidates_and_prefixes_are_kept(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {
        "fast": tool_server("--tool", "sleepy", "--label", "fast"),
        "slow": tool_server("--tool", "sleepy", "--label", "slow"),
        "github": tool_server("--tool", "search", "--label", "gh", toolPrefix="gh_"),
    }}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        assert [t["name"] for t in rpc.result("tools/list")["tools"]] == ["fast__sleepy", "gh_search", "slow__sleepy"]
        refused = rpc.call("tools/call", {"name": "sleepy", "arguments": {}})["error"]
        assert refused["code"] == -32602
        assert refused["data"]["candidates"] == ["fast__sleepy", "slow__sleepy"]
        assert "fast__sleepy" in refused["message"]
        assert rpc.result("tools/call", {"name": "gh_search", "arguments": {"text": "q"}})["content"][0]["text"] == "gh:q"


# --------------------------------------------------------------------------- never silent


def test_a_request_over_the_limit_is_answered_with_its_id_and_the_sdk_does_not_hang(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"limits": {"maxMessageBytes": 65536}, "agents": {"echo": tool_server("--tool", "echo")}}))

    async def main():
        server = StdioServerParameters(command=str(switchboard_bin()), args=stdio_args(config))
        async with Client(server, mode="legacy") as client:
            with anyio.fail_after(20):
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("echo", {"text": "x" * 100_000})
            assert refused.value.error.code == -32003
            assert refused.value.error.data["limit"] == 65536 and refused.value.error.data["size"] > 100_000
            assert (await client.call_tool("echo", {"text": "small"})).content[0].text == "server:small"

    anyio.run(main)


def test_an_oversize_request_with_its_id_at_the_end_is_answered_with_that_id(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"listen": [{"url": "tcp://127.0.0.1:0", "maxMessageBytes": 4096}]}))
    gateway = _start_configured(start_gateway, config)
    sock = gateway.tcp.connect()
    reader = sock.makefile("rb")
    line = '{"jsonrpc":"2.0","method":"ping","params":{"pad":"' + "p" * 10_000 + '"},"id":"at-the-end"}\n'
    sock.sendall(line.encode())
    answer = json.loads(reader.readline())
    assert answer["id"] == "at-the-end" and answer["error"]["code"] == -32003
    assert answer["error"]["data"] == {"limit": 4096, "size": len(line) - 1}
    sock.sendall(jline(req("ping", 2)))
    assert json.loads(reader.readline()) == {"jsonrpc": "2.0", "id": 2, "result": {}}
    sock.close()


def _start_configured(start_gateway, config: Path):
    """A gateway whose listeners come from its config file (no --listen on the command line)."""
    gateway = start_gateway(extra=["--config", str(config)])
    gateway.wait_listening(1)
    return gateway


def test_an_agent_reply_over_the_limit_fails_the_call_at_once_and_the_agent_stays_usable(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {"big": tool_server("--tool", "blob", "--label", "big", maxMessageBytes=65536)}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        started = time.monotonic()
        error = rpc.call("tools/call", {"name": "blob", "arguments": {"bytes": 200_000}}, timeout=20)["error"]
        assert time.monotonic() - started < 10, "the caller heard at once, not at the call timeout"
        assert error["code"] == -32003 and error["data"]["limit"] == 65536 and error["data"]["size"] > 200_000
        assert rpc.result("tools/call", {"name": "blob", "arguments": {"text": "ok"}})["content"][0]["text"] == "big:ok"
        assert rpc.result("agents/get", {"agentId": "big#1"})["currentState"] == "IDLE"


# --------------------------------------------------------------------------- one vocabulary, sensible retries


def test_tasks_scatter_and_pipelines_take_both_vocabularies(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {"echo": tool_server("--tool", "echo", "--label", "e", instances=2)}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        seed = rpc.result("tasks/submit", {"taskType": "echo", "taskData": {"text": "seed"}})["taskId"]
        mcp_words = rpc.result("tasks/submit", {"tool": "echo", "arguments": {"text": "mcp"}})["taskId"]
        assert rpc.result("tasks/result", {"taskId": seed})["content"][0]["text"] == "e:seed"
        assert rpc.result("tasks/result", {"taskId": mcp_words})["content"][0]["text"] == "e:mcp"
        both = rpc.call("tasks/submit", {"tool": "echo", "taskType": "echo"})
        assert both["error"]["code"] == -32602

        # A refused scatter reserves nothing: the instance has its capacity afterwards.
        assert rpc.call("tasks/scatter", {"tool": "echo", "quorum": 0})["error"]["code"] == -32602
        assert all(a["inFlight"] == 0 for a in rpc.result("agents/list", {"template": "echo"})["agents"])
        scatter = rpc.result("tasks/scatter", {"taskType": "echo", "taskData": {"text": "s"}, "targets": 1})
        assert scatter["succeeded"] == 1 and scatter["results"][0]["result"]["content"][0]["text"] == "e:s"

        pipeline = rpc.result("tasks/pipeline", {"stages": [
            {"tool": "echo", "arguments": {"text": "one"}},
            {"taskType": "echo", "taskData": {"text": "${previous}+two"}},
        ]})
        assert pipeline["result"]["content"][0]["text"] == "e:e:one+two"


def test_a_task_retries_only_what_it_says_and_never_invalid_params(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {"flaky": tool_server("--tool", "flaky", "--label", "f", instances=2)}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        def attempts(params):
            task = rpc.result("tasks/submit", {"tool": "flaky", "maxRetries": 2, "backoffDelay": 0.01, **params})["taskId"]
            ended = rpc.call("tasks/result", {"taskId": task})
            assert "error" in ended, ended
            return rpc.result("tasks/get", {"taskId": task})

        by_default = attempts({"arguments": {"fail": "tool"}})
        assert by_default["state"] == "FAILED" and len(by_default["attempts"]) == 3
        only_crashes = attempts({"arguments": {"fail": "tool"}, "retryOn": ["agentFailure", "timeout"]})
        assert only_crashes["state"] == "FAILED" and len(only_crashes["attempts"]) == 1
        assert only_crashes["retryOn"] == ["agentFailure", "timeout"]
        invalid = attempts({"arguments": {"fail": "params"}})
        assert invalid["state"] == "FAILED" and len(invalid["attempts"]) == 1
        assert "-32602" in invalid["errorMessage"]
        wrong = rpc.call("tasks/submit", {"tool": "flaky", "retryOn": ["invalidRequest"]})
        assert wrong["error"]["code"] == -32602


# --------------------------------------------------------------------------- what the operator reads


def test_a_server_that_prints_a_banner_on_stdout_is_explained(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"agents": {
        # Its banner has no newline: it sticks to the first reply, which still gets through.
        "glued": tool_server("--tool", "g", "--label", "glued", "--banner-glued", "Starting glued v1 "),
        # This one answers nothing after its banner (it sleeps past its start-up timeout).
        "chatty": tool_server("--tool", "c", "--banner", "Chatty server v2 listening on stdio", "--start-delay", "30",
                              "--stderr", "hello from chatty's stderr", restart="never", startupTimeoutSeconds=1),
    }}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with RpcSession.connect(gateway.tcp) as rpc:
        assert [t["name"] for t in rpc.result("tools/list")["tools"]] == ["g"]
        assert rpc.result("tools/call", {"name": "g", "arguments": {"text": "x"}})["content"][0]["text"] == "glued:x"
        failed = gateway.wait_log(r"chatty#1 is down .*failed its MCP handshake", timeout=30)
        assert "warning" in failed and "Chatty server v2 listening on stdio" in failed and "never" in failed
        stderr_line = gateway.wait_log(r"hello from chatty's stderr")
        assert "chatty#1" in stderr_line
        chatty = rpc.result("agents/get", {"agentId": "chatty#1"})
        assert chatty["currentState"] == "ERROR" and chatty["healthStatus"] == "UNHEALTHY"


def test_a_port_in_use_is_reported_in_plain_words(start_gateway):
    first = start_gateway("tcp")
    host, port = first.tcp.address
    second = subprocess.run([str(switchboard_bin()), "serve", "--listen", f"tcp://{host}:{port}"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert second.returncode == 2
    assert "already in use" in second.stderr and f"tcp://{host}:{port}" in second.stderr, second.stderr


def test_a_secret_expanded_into_an_agents_arguments_is_not_shown_to_clients(start_gateway, tmp_path):
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"mcpServers": {
        "vault": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "peek", "--stderr", "token=${SB_TEST_SECRET}"]},
    }}))
    env = {**os.environ, "SB_TEST_SECRET": "hunter2-secret"}
    gateway = start_gateway("tcp", extra=["--config", str(config)], env=env)
    with RpcSession.connect(gateway.tcp) as rpc:
        # The agent got the value (it prints it on its stderr, which the operator's log shows) ...
        assert rpc.result("tools/call", {"name": "peek", "arguments": {"text": "x"}})["content"][0]["text"] == "server:x"
        gateway.wait_log(r"vault#1.*token=hunter2-secret")
        # ... clients see the configuration as written.
        shown = json.dumps(rpc.result("agents/get", {"agentId": "vault#1"}))
        assert "${SB_TEST_SECRET}" in shown and "hunter2-secret" not in shown
