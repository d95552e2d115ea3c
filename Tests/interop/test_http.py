"""The HTTP face (protocol-spec chapter 14): MCP's Streamable HTTP at /mcp in both eras, driven
by the official SDK's and fastmcp's HTTP clients as a host drives them (connect, list once, call);
the REST API as curl writes it; WebSockets as a browser opens them; health; origins; OAuth's
401/403 with the resource metadata.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import anyio
import httpx
import pytest
from mcp import Client
from websockets.sync.client import connect as ws_connect

from sbwire import REPO

TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "stdio_tool_server.py"
MCP_ACCEPT = "application/json, text/event-stream"
SESSION_KEY = "a key of at least thirty-two characters, shared by the replicas"


def write_config(tmp_path, name="gateway.json", **extra) -> str:
    path = tmp_path / name
    servers = {"echo": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "echo", "--label", "e"]}}
    path.write_text(json.dumps({"mcpServers": servers, **extra}))
    return str(path)


def http_gateway(start_gateway, tmp_path, **extra):
    gw = start_gateway("http", "tcp", extra=["--config", write_config(tmp_path, **extra)])
    return gw, gw.endpoint("http").url


def initialize(client: httpx.Client, base: str, version="2025-11-25", headers=None) -> str:
    reply = client.post(
        f"{base}/mcp",
        headers={"accept": MCP_ACCEPT, **(headers or {})},
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["protocolVersion"] == version
    session = reply.headers["mcp-session-id"]
    note = client.post(
        f"{base}/mcp",
        headers={"accept": MCP_ACCEPT, "mcp-session-id": session, "mcp-protocol-version": version, **(headers or {})},
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
    )
    assert note.status_code == 202, note.text
    return session


def session_call(client, base, session, method, params=None, id_=2, version="2025-11-25", headers=None):
    return client.post(
        f"{base}/mcp",
        headers={"accept": MCP_ACCEPT, "mcp-session-id": session, "mcp-protocol-version": version, **(headers or {})},
        json={"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}},
    )


# --------------------------------------------------------------------------- real MCP clients


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_http_client_lists_and_calls_tools_right_after_connecting(start_gateway, tmp_path, mode):
    gw, base = http_gateway(start_gateway, tmp_path)

    async def host():
        async with Client(f"{base}/mcp", mode=mode, read_timeout_seconds=20) as client:
            # As a host does: one list, right after connecting, no waiting for a notification.
            tools = await client.list_tools()
            assert [tool.name for tool in tools.tools] == ["echo"]
            result = await client.call_tool("echo", {"text": "over http"})
            assert result.content[0].text == "e:over http"
            return client.protocol_version

    version = anyio.run(host)
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")


def test_fastmcp_client_over_http(start_gateway, tmp_path):
    from fastmcp import Client as FastMCPClient

    gw, base = http_gateway(start_gateway, tmp_path)

    async def host():
        async with FastMCPClient(f"{base}/mcp") as client:
            tools = await client.list_tools()
            assert [tool.name for tool in tools] == ["echo"]
            result = await client.call_tool("echo", {"text": "fast"})
            assert result.content[0].text == "e:fast"

    anyio.run(host)


# --------------------------------------------------------------------------- /mcp, handshake era


def test_a_session_is_served_by_another_replica_sharing_the_key_and_ends_with_delete(start_gateway, tmp_path):
    gw1, base1 = http_gateway(start_gateway, tmp_path, http={"sessionKey": SESSION_KEY})
    with httpx.Client(timeout=20) as client:
        session = initialize(client, base1)
        assert len(session) == 46 and session.isascii()
        listed = session_call(client, base1, session, "tools/list")
        assert [t["name"] for t in listed.json()["result"]["tools"]] == ["echo"]

        # A second gateway that has never seen the session serves it: the id carries what it needs.
        gw2, base2 = http_gateway(start_gateway, tmp_path, http={"sessionKey": SESSION_KEY})
        called = session_call(client, base2, session, "tools/call", {"name": "echo", "arguments": {"text": "there"}}, id_=3)
        assert called.status_code == 200, called.text
        assert called.json()["result"]["content"][0]["text"] == "e:there"

        # A gateway with another key does not know it.
        gw3, base3 = http_gateway(start_gateway, tmp_path, http={"sessionKey": SESSION_KEY.replace("a key", "b key")})
        unknown = session_call(client, base3, session, "tools/list", id_=4)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32001

        ended = client.delete(f"{base1}/mcp", headers={"mcp-session-id": session})
        assert ended.status_code == 204
        after = session_call(client, base1, session, "tools/list", id_=5)
        assert after.status_code == 404, after.text


def test_session_rules_of_the_handshake_era(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    with httpx.Client(timeout=20) as client:
        # Without a session or the stateless envelope, a request is refused with a reason.
        bare = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT}, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert bare.status_code == 400 and "Mcp-Session-Id" in bare.json()["error"]["message"]
        forged = session_call(client, base, "x" * 46, "tools/list")
        assert forged.status_code == 404
        session = initialize(client, base, version="2025-06-18")
        wrong_version = session_call(client, base, session, "tools/list", version="1999-01-01")
        assert wrong_version.status_code == 400 and wrong_version.json()["error"]["code"] == -32022
        not_acceptable = client.post(
            f"{base}/mcp", headers={"accept": "text/html", "mcp-session-id": session}, json={"jsonrpc": "2.0", "id": 9, "method": "ping"})
        assert not_acceptable.status_code == 406
        # A GET stream takes only a client that accepts events.
        get = client.get(f"{base}/mcp", headers={"mcp-session-id": session, "accept": "application/json"})
        assert get.status_code == 406
        # Batches exist in 2025-03-26 only.
        batch = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"},
                            json=[{"jsonrpc": "2.0", "id": 5, "method": "ping"}])
        assert batch.status_code == 400 and "batches" in batch.json()["error"]["message"]
        old = initialize(client, base, version="2025-03-26")
        both = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT, "mcp-session-id": old, "mcp-protocol-version": "2025-03-26"},
                           json=[{"jsonrpc": "2.0", "id": 6, "method": "ping"}, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}])
        assert both.status_code == 200 and [reply["id"] for reply in both.json()] == [6, 7]
        # A pretty-printed body is one message, as any JSON parser reads it.
        pretty = json.dumps({"jsonrpc": "2.0", "id": 8, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}}}, indent=2)
        opened = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT, "content-type": "application/json", "authorization": "Bearer ignored"}, content=pretty)
        # (A token sent to a gateway that asks for none is ignored, not refused.)
        assert opened.status_code == 200 and opened.json()["id"] == 8 and "mcp-session-id" in opened.headers
        # A handshake the gateway refuses opens no session.
        refused = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT}, json={"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {}})
        assert refused.status_code == 400 and "mcp-session-id" not in refused.headers and refused.json()["error"]["code"] == -32602


def test_a_stream_cut_before_its_reply_is_resumed_with_last_event_id(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    with httpx.Client(timeout=20) as client:
        session = initialize(client, base)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "later", "sleep": 1}, "_meta": {"progressToken": "p1"}},
    }).encode()
    # A raw client that reads the first event (the priming one) and drops the connection.
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            f"POST /mcp HTTP/1.1\r\nhost: {host}:{port}\r\naccept: {MCP_ACCEPT}\r\ncontent-type: application/json\r\n"
            f"mcp-session-id: {session}\r\nmcp-protocol-version: 2025-11-25\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        seen = b""
        while b"\n\n" not in seen.split(b"\r\n\r\n", 1)[-1]:
            chunk = raw.recv(4096)
            assert chunk, seen
            seen += chunk
        assert b"text/event-stream" in seen
        assert b"id: 1-0" in seen
    # The reply comes while nobody listens; a GET with Last-Event-ID gets it.
    with httpx.Client(timeout=20) as client:
        with client.stream("GET", f"{base}/mcp", headers={"accept": "text/event-stream", "mcp-session-id": session, "last-event-id": "1-0"}) as stream:
            assert stream.status_code == 200
            data = [line.removeprefix("data: ") for line in stream.iter_lines() if line.startswith("data: ") and line != "data: "]
    reply = json.loads(data[-1])
    assert reply["id"] == 7 and reply["result"]["content"][0]["text"] == "e:later"


# --------------------------------------------------------------------------- /mcp, 2026-07-28


def modern_request(method, params=None, id_=1, version="2026-07-28"):
    params = dict(params or {})
    params["_meta"] = {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}, **params.get("_meta", {})}
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


def test_stateless_requests_check_their_headers_against_the_body(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    headers = {"accept": MCP_ACCEPT, "mcp-protocol-version": "2026-07-28"}
    with httpx.Client(timeout=20) as client:
        ok = client.post(f"{base}/mcp", headers={**headers, "mcp-method": "tools/call", "mcp-name": "echo"},
                         json=modern_request("tools/call", {"name": "echo", "arguments": {"text": "m"}}))
        assert ok.status_code == 200, ok.text
        assert ok.json()["result"]["content"][0]["text"] == "e:m"
        assert "mcp-session-id" not in ok.headers
        mismatch = client.post(f"{base}/mcp", headers={**headers, "mcp-method": "tools/list"}, json=modern_request("tools/call", {"name": "echo"}))
        assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
        name = client.post(f"{base}/mcp", headers={**headers, "mcp-method": "tools/call", "mcp-name": "other"}, json=modern_request("tools/call", {"name": "echo"}))
        assert name.status_code == 400 and name.json()["error"]["code"] == -32020
        future = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT, "mcp-protocol-version": "2099-01-01", "mcp-method": "tools/list"},
                             json=modern_request("tools/list", version="2099-01-01"))
        assert future.status_code == 400
        error = future.json()["error"]
        assert error["code"] == -32022 and "2026-07-28" in error["data"]["supported"]
        batch = client.post(f"{base}/mcp", headers=headers, json=[modern_request("ping"), modern_request("ping", id_=2)])
        assert batch.status_code == 400
        header_only = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT, "mcp-protocol-version": "2099-01-01"},
                                  json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert header_only.status_code == 400 and header_only.json()["error"]["code"] == -32022
        assert client.get(f"{base}/mcp", headers={"accept": "text/event-stream"}).status_code == 405
        assert client.delete(f"{base}/mcp").status_code == 405


def test_closing_the_response_cancels_a_stateless_request(start_gateway, tmp_path):
    gw = start_gateway("http", extra=["--config", write_config(tmp_path), "--log-level", "debug"])
    base = gw.endpoint("http").url
    body = modern_request("tools/call", {"name": "echo", "arguments": {"sleep": 60}})
    headers = {"accept": MCP_ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}
    mark = len(gw.stderr_lines)
    # The client gives up after a second and closes the connection, as a host does on its user's stop.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/mcp", headers=headers, json=body, timeout=httpx.Timeout(10, read=1))
    # Long before the agent's 60 s sleep ends, the gateway has cancelled the call.
    line = gw.wait_log(r"request tools/call 1: cancelled in", timeout=10, start=mark)
    assert float(line.split("cancelled in ")[1].split(" ms")[0]) < 10_000


# --------------------------------------------------------------------------- REST


def curl(*args) -> tuple[int, dict]:
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=60, check=True).stdout
    body, code = out.rsplit("\n", 1)
    return int(code), json.loads(body) if body else {}


def test_the_seed_rest_calls_work_with_curl(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    api = f"{base}/api/v1"
    code, agents = curl(f"{api}/agents")
    assert code == 200 and [a["agentName"].split("#")[0] for a in agents["agents"]] == ["echo"]
    agent_id = agents["agents"][0]["agentId"]
    # An instance id holds a '#', which a URL must escape.
    code, status = curl(f"{api}/agents/{quote(agent_id, safe='')}/status")
    # Right after the start the agent may still be starting: the status says so.
    assert code == 200 and status["agentId"] == agent_id and status["currentState"] in ("STARTING", "IDLE", "BUSY"), status
    assert status["healthStatus"] in ("HEALTHY", "DEGRADED") and "performanceMetrics" in status
    code, task = curl("-X", "POST", f"{api}/tasks/submit", "-H", "content-type: application/json",
                      "-d", json.dumps({"taskType": "echo", "taskData": {"text": "queued"}, "priority": 7, "timeout": 30, "maxRetries": 1}))
    assert code == 200 and task["state"] == "PENDING", task
    code, result = curl(f"{api}/tasks/{task['taskId']}/result")
    assert code == 200 and result["content"][0]["text"] == "e:queued", result
    code, status = curl(f"{api}/tasks/{task['taskId']}/status")
    assert code == 200 and status["state"] == "COMPLETED" and status["retryCount"] == 0
    code, now = curl(f"{api}/tasks/{task['taskId']}/result?wait=0")
    assert code == 200 and now["content"][0]["text"] == "e:queued"
    code, written = curl("-X", "PUT", f"{api}/memory/plan", "-H", "content-type: application/json", "-d", '{"value": {"steps": 2}}')
    assert code == 200 and written["version"] == 1
    code, read = curl(f"{api}/memory/plan")
    assert code == 200 and read["value"] == {"steps": 2}


def test_a_running_task_answers_202_without_waiting(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    with httpx.Client(timeout=20) as client:
        task = client.post(f"{base}/api/v1/tasks/submit", json={"taskType": "echo", "taskData": {"sleep": 30}}).json()
        pending = client.get(f"{base}/api/v1/tasks/{task['taskId']}/result", params={"wait": "0"})
        assert pending.status_code == 202 and pending.json()["taskId"] == task["taskId"]
        cancelled = client.post(f"{base}/api/v1/tasks/{task['taskId']}/cancel")
        assert cancelled.status_code == 200, cancelled.text


def test_rest_errors_carry_the_json_rpc_code_beside_the_status(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    with httpx.Client(timeout=20) as client:
        missing = client.get(f"{base}/api/v1/tasks/no-such-task/status")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == -32602 and missing.json()["status"] == 404
        bad = client.post(f"{base}/api/v1/tasks/submit", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32602
        wrong = client.post(f"{base}/api/v1/memory/plan")
        assert wrong.status_code == 405 and set(wrong.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}
        nowhere = client.get(f"{base}/api/v1/nowhere")
        assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == -32601
        huge = client.post(f"{base}/api/v1/tasks/submit", content=b"x" * (5 * 1024 * 1024))
        assert huge.status_code == 413 and huge.json()["error"]["code"] == -32003
        document = client.get(f"{base}/api/v1/openapi.json").json()
        assert document["openapi"] == "3.1.0" and "/tasks/{taskId}/result" in document["paths"]


def test_health_and_readiness(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    with httpx.Client(timeout=20) as client:
        assert client.get(f"{base}/healthz").json() == {"status": "alive"}
        # As an orchestrator probes: not ready while the configured agent starts, then ready.
        deadline = time.monotonic() + 20
        ready = client.get(f"{base}/readyz")
        while ready.status_code != 200 and time.monotonic() < deadline:
            assert ready.status_code == 503 and ready.json()["checks"]["agents"] == "starting: echo", ready.text
            time.sleep(0.05)
            ready = client.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["checks"] == {"agents": "started", "backend": "embedded", "listeners": "2 bound"}


# --------------------------------------------------------------------------- origins and OAuth


def test_a_page_from_another_origin_is_refused(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    with httpx.Client(timeout=20) as client:
        evil = client.post(f"{base}/mcp", headers={"accept": MCP_ACCEPT, "origin": "http://evil.example"},
                           json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}})
        assert evil.status_code == 403
        assert client.get(f"{base}/api/v1/agents", headers={"origin": "http://evil.example"}).status_code == 403
        assert client.get(f"{base}/api/v1/agents", headers={"origin": "http://localhost:5173"}).status_code == 200
    with pytest.raises(Exception):
        ws_connect(base.replace("http://", "ws://") + "/ws", origin="http://evil.example", open_timeout=5)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_oauth_resource_server_answers(start_gateway, tmp_path):
    auth = {
        "anonymous": "none",
        "roles": {"reader": {"allow": ["tools/list", "agents/list", "auth/whoami"]}},
        "apiKeys": [
            {"name": "alice", "sha256": sha256("key-alice"), "roles": ["admin"]},
            {"name": "rita", "sha256": sha256("key-rita"), "roles": ["reader"]},
        ],
    }
    gw, base = http_gateway(start_gateway, tmp_path, auth=auth,
                            http={"authorizationServers": ["https://issuer.example"], "scopesSupported": ["mcp:tools"]})
    call = modern_request("tools/call", {"name": "echo", "arguments": {"text": "t"}})
    headers = {"accept": MCP_ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}
    with httpx.Client(timeout=20) as client:
        anonymous = client.post(f"{base}/mcp", headers=headers, json=call)
        assert anonymous.status_code == 401
        challenge = anonymous.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge
        metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        metadata = client.get(metadata_url).json()
        assert metadata["resource"].endswith("/mcp") and metadata["authorization_servers"] == ["https://issuer.example"]
        assert metadata["scopes_supported"] == ["mcp:tools"]

        allowed = client.post(f"{base}/mcp", headers={**headers, "authorization": "Bearer key-alice"}, json=call)
        assert allowed.status_code == 200 and allowed.json()["result"]["content"][0]["text"] == "e:t"
        wrong = client.post(f"{base}/mcp", headers={**headers, "authorization": "Bearer key-mallory"}, json=call)
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        reader = client.post(f"{base}/mcp", headers={**headers, "authorization": "Bearer key-rita"}, json=call)
        assert reader.status_code == 403 and 'error="insufficient_scope"' in reader.headers["www-authenticate"]
        # REST decides the same way, as the same principals.
        assert client.get(f"{base}/api/v1/auth/whoami", headers={"authorization": "Bearer key-rita"}).json()["principal"] == "rita"
        assert client.get(f"{base}/api/v1/gateway/status", headers={"authorization": "Bearer key-rita"}).status_code == 403
        assert client.get(f"{base}/api/v1/gateway/status").status_code in (401, 403)


# --------------------------------------------------------------------------- WebSockets


def test_a_browser_websocket_speaks_json_rpc_and_receives_events(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    ws_base = base.replace("http://", "ws://")
    with ws_connect(f"{ws_base}/ws", origin="http://localhost:8080", open_timeout=10) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["id"] == 1 and [t["name"] for t in reply["result"]["tools"]] == ["echo"]
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "ws"}}}))
        assert json.loads(ws.recv(timeout=10))["result"]["content"][0]["text"] == "e:ws"
    with ws_connect(f"{ws_base}/ws/events?pattern=market.*", open_timeout=10) as events:
        # The subscription is in place once a publish that matches reaches it: publish until one does.
        with httpx.Client(timeout=20) as client:
            deadline = time.monotonic() + 10
            received = None
            while received is None and time.monotonic() < deadline:
                client.post(f"{base}/api/v1/events/publish", json={"topic": "market.btc", "data": {"price": 1}})
                client.post(f"{base}/api/v1/events/publish", json={"topic": "other.topic", "data": {}})
                try:
                    received = json.loads(events.recv(timeout=0.5))
                except TimeoutError:
                    pass
        assert received["method"] == "notifications/events/message"
        assert received["params"]["topic"] == "market.btc" and received["params"]["data"] == {"price": 1}


def test_a_browser_websocket_sees_an_agent_drained_and_its_messages(start_gateway, tmp_path):
    gw, base = http_gateway(start_gateway, tmp_path)
    ws_base = base.replace("http://", "ws://")
    with ws_connect(f"{ws_base}/ws/agents/echo/communications", origin="http://localhost:8080", open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))
        # The agent's status at once, in the seed's AgentCommunicationEvent shape.
        assert first["eventType"] == "agent_status_changed" and set(first) >= {"eventType", "timestamp", "data"}
        agent_id = first["data"]["agentId"]
        assert agent_id.startswith("echo")

        def next_event(predicate, timeout=10):
            deadline = time.monotonic() + timeout
            while True:
                event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if predicate(event):
                    return event

        if first["data"]["currentState"] == "STARTING":
            next_event(lambda e: e["eventType"] == "agent_status_changed" and e["data"]["currentState"] == "IDLE")
        with httpx.Client(timeout=20) as client:
            sent = client.post(f"{base}/api/v1/agents/{quote(agent_id, safe='')}/message", json={"messageType": "notification", "messageData": {"hello": 1}})
            assert sent.status_code == 200, sent.text
            received = next_event(lambda e: e["eventType"] == "message_received")
            assert received["data"]["messageData"] == {"hello": 1} and received["data"]["messageId"] == sent.json()["messageId"]
            drained = client.post(f"{base}/api/v1/agents/{quote(agent_id, safe='')}/drain")
            assert drained.status_code == 200, drained.text
        changed = next_event(lambda e: e["eventType"] == "agent_status_changed" and e["data"].get("draining") is True or e["data"]["currentState"] == "OFFLINE")
        assert changed["data"]["agentId"] == agent_id


# --------------------------------------------------------------------------- HTTP agents

HTTP_TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "http_tool_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_remote_server(port: int, label: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(HTTP_TOOL_SERVER), str(port), "--label", label],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            assert proc.poll() is None, "the FastMCP server exited"
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the FastMCP server did not start listening")


def test_a_remote_fastmcp_server_listed_by_url_serves_calls_and_is_reconnected(start_gateway, tmp_path):
    port = free_port()
    remote = start_remote_server(port, "one")
    try:
        config = tmp_path / "hosts.json"
        config.write_text(json.dumps({
            "mcpServers": {"remote": {"type": "http", "url": f"http://127.0.0.1:{port}/mcp", "headers": {"X-Team": "${TEAM}"}}},
            "egress": {"allow": ["127.0.0.1"]},
        }))
        gw = start_gateway("http", extra=["--config", str(config)], env={**__import__("os").environ, "TEAM": "desk"})
        base = gw.endpoint("http").url

        async def host():
            async with Client(f"{base}/mcp", mode="legacy", read_timeout_seconds=20) as client:
                tools = await client.list_tools()
                assert sorted(tool.name for tool in tools.tools) == ["shout", "slow"], gw.stderr_text()
                result = await client.call_tool("shout", {"text": "hi"})
                assert result.content[0].text == "one:HI"
                seen = []

                async def progress(value, total, message):
                    seen.append((value, total))

                slow = await client.call_tool("slow", {"seconds": 0.2}, progress_callback=progress)
                assert slow.content[0].text == "done" and seen == [(0, 2), (1, 2)]

        anyio.run(host)
        status = httpx.get(f"{base}/api/v1/agents/{quote('remote#1', safe='')}/status", timeout=10).json()
        # What the gateway shows is the URL as written; the headers' values are not shown.
        assert status["configuration"] == {"transport": "streamable-http", "url": f"http://127.0.0.1:{port}/mcp"}
        assert "desk" not in json.dumps(status)

        # The server restarts (a new process: it knows no session): the gateway reconnects.
        remote.terminate()
        remote.wait(10)
        remote = start_remote_server(port, "two")
        deadline = time.monotonic() + 30
        text = None
        while time.monotonic() < deadline:
            reply = httpx.post(f"{base}/api/v1/tasks/submit", json={"tool": "shout", "arguments": {"text": "again"}}, timeout=10).json()
            outcome = httpx.get(f"{base}/api/v1/tasks/{reply['taskId']}/result", timeout=30)
            if outcome.status_code == 200:
                text = outcome.json()["content"][0]["text"]
                break
            time.sleep(0.2)
        assert text == "two:AGAIN"
    finally:
        remote.kill()


def test_a_remote_server_the_egress_rules_refuse_is_not_reached(start_gateway, tmp_path):
    port = free_port()
    config = tmp_path / "hosts.json"
    config.write_text(json.dumps({"mcpServers": {"remote": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
    gw = start_gateway("http", extra=["--config", str(config)])
    line = gw.wait_log(r"agent remote#1 is down .*refused: loopback addresses are not allowed", timeout=20)
    assert "egress.allow" in line


# --------------------------------------------------------------------------- mcp-proxy

def test_mcp_proxy_bridges_a_stdio_host_to_the_gateway_over_http(start_gateway, tmp_path):
    """mcp-proxy 0.13 (the 1.x SDK's streamable HTTP client) turns the gateway's /mcp into a
    stdio server; a stdio host lists and calls through it."""
    proxy = REPO / ".venv-mcp-proxy" / "bin" / "mcp-proxy"
    assert proxy.exists(), "mcp-proxy is not installed (scripts/setup.sh --test installs it in .venv-mcp-proxy)"
    from mcp.client.stdio import StdioServerParameters, stdio_client

    gw, base = http_gateway(start_gateway, tmp_path)
    params = StdioServerParameters(command=str(proxy), args=["--transport", "streamablehttp", f"{base}/mcp"])

    async def host():
        with open(tmp_path / "proxy.log", "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=30) as client:
                tools = await client.list_tools()
                assert [tool.name for tool in tools.tools] == ["echo"]
                result = await client.call_tool("echo", {"text": "proxied"})
                assert result.content[0].text == "e:proxied"

    anyio.run(host)


def test_an_http_agent_registered_at_run_time_with_rest_serves_calls(start_gateway, tmp_path):
    port = free_port()
    remote = start_remote_server(port, "late")
    try:
        config = tmp_path / "gateway.json"
        config.write_text(json.dumps({"egress": {"allow": ["127.0.0.1"]}}))
        gw = start_gateway("http", extra=["--config", str(config)])
        base = gw.endpoint("http").url
        with httpx.Client(timeout=20) as client:
            registered = client.post(f"{base}/api/v1/agents/register", json={
                "agentName": "late", "agentType": "mcp", "version": "2", "capabilities": ["shouting"],
                "endpoint": f"http://user:secret@127.0.0.1:{port}/mcp", "headers": {"X-Token": "t0ken"},
            })
            assert registered.status_code == 200, registered.text
            status = registered.json()
            assert status["agentId"] == "late#1" and status["version"] == "2"
            # Shown without the URL's credentials, and never the headers.
            assert "secret" not in registered.text and "t0ken" not in registered.text
            again = client.post(f"{base}/api/v1/agents/register", json={"agentName": "late", "endpoint": f"http://127.0.0.1:{port}/mcp"})
            assert again.status_code == 400 and "exists already" in again.json()["error"]["message"]
            no_endpoint = client.post(f"{base}/api/v1/agents/register", json={"agentName": "other"})
            assert no_endpoint.status_code == 400 and "endpoint" in no_endpoint.json()["error"]["message"]
            refused = client.post(f"{base}/api/v1/agents/register", json={"agentName": "inside", "endpoint": "http://10.0.0.1/mcp"})
            assert refused.status_code == 403

        async def host():
            async with Client(f"{base}/mcp", mode="auto", read_timeout_seconds=20) as client:
                tools = await client.list_tools()
                assert "shout" in [tool.name for tool in tools.tools]
                result = await client.call_tool("shout", {"text": "late"})
                assert result.content[0].text == "late:LATE"

        # Right after the registration, as a host would: the list waits for the agent starting.
        anyio.run(host)
    finally:
        remote.kill()


def test_a_stateless_client_listens_for_list_changes(start_gateway, tmp_path):
    """subscriptions/listen (2026-07-28) over HTTP with the SDK's own listen(): acknowledged
    first, then a tools list change when the only agent is drained, then the refetched list."""
    from mcp.client.subscriptions import ToolsListChanged

    gw, base = http_gateway(start_gateway, tmp_path)

    async def host():
        async with Client(f"{base}/mcp", mode="auto", read_timeout_seconds=20) as client:
            assert client.protocol_version == "2026-07-28"
            assert [tool.name for tool in (await client.list_tools()).tools] == ["echo"]
            async with client.listen(tools_list_changed=True, resources_list_changed=True) as subscription:
                # The gateway honors what it can send: tool list changes, not resource ones.
                assert subscription.honored.tools_list_changed is True
                assert not subscription.honored.resources_list_changed
                async with httpx.AsyncClient(timeout=20) as rest:
                    drained = await rest.post(f"{base}/api/v1/agents/{quote('echo#1', safe='')}/drain")
                    assert drained.status_code == 200, drained.text
                with anyio.fail_after(20):
                    event = await subscription.__anext__()
                assert isinstance(event, ToolsListChanged)
            assert (await client.list_tools()).tools == []

    anyio.run(host)
