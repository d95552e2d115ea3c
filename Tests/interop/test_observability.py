"""What operators watch (protocol-spec chapter 15): Prometheus at /metrics read with the
Prometheus text parser as a scraper reads it, traces through the gateway and an agent received by
a real OTLP/HTTP receiver, the JSON access log, the per-agent history by minute, hour and day
(and across a restart), the message record, and alerts that fire and resolve.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from urllib.parse import quote
import pytest
from prometheus_client.parser import text_string_to_metric_families

from otlp_receiver import OTLPReceiver
from sbwire import REPO, RpcSession

TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "stdio_tool_server.py"
TRACED_AGENT = REPO / "Tests" / "interop" / "agents" / "traced_agent.py"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_config(tmp_path, document: dict, name="gateway.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def echo_servers(label="e") -> dict:
    return {"echo": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "echo", "--tool", "crash", "--label", label]}}


def scrape(base: str, token: str | None = None) -> dict:
    """Every sample of /metrics as {(name, frozenset(labels)): value}, parsed as Prometheus does."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    reply = httpx.get(f"{base}/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4"), reply.headers
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict, name: str, **labels) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def ready(rpc: RpcSession, tool="echo"):
    # A host lists tools once after connecting: the gateway waits for starting agents itself.
    assert tool in {t["name"] for t in rpc.result("tools/list")["tools"]}


def test_metrics_parse_and_move_as_calls_tasks_failures_and_events_happen(start_gateway, tmp_path):
    gw = start_gateway("http", "tcp", extra=["--config", write_config(tmp_path, {"mcpServers": echo_servers()})])
    base = gw.endpoint("http").url
    rpc = RpcSession.connect(gw.tcp)
    rpc.initialize()
    ready(rpc)
    before = scrape(base)

    assert rpc.result("tools/call", {"name": "echo", "arguments": {"text": "a"}})["content"][0]["text"] == "e:a"
    assert rpc.result("tools/call", {"name": "echo", "arguments": {"text": "b"}})["content"][0]["text"] == "e:b"
    assert rpc.result("tools/call", {"name": "echo", "arguments": {"fail": "tool"}})["isError"] is True
    assert "error" in rpc.call("tools/call", {"name": "echo", "arguments": {"fail": "params"}})
    assert "error" in rpc.call("no/such/method", {})
    task = rpc.result("tasks/submit", {"taskType": "echo", "taskData": {"text": "t"}})
    assert rpc.result("tasks/result", {"taskId": task["taskId"]})["content"][0]["text"] == "e:t"
    subscription = rpc.result("events/subscribe", {"topic": "metrics.test"})
    assert subscription["subscriptionId"]
    published = rpc.result("events/publish", {"topic": "metrics.test", "data": {"n": 1}})
    assert published["delivered"] == 1
    rpc.wait_notification("notifications/events/message")
    after = scrape(base)

    def grew(name, by, **labels):
        change = total(after, name, **labels) - total(before, name, **labels)
        assert change == by, f"{name}{labels}: {total(before, name, **labels)} -> {total(after, name, **labels)}, expected +{by}"

    grew("switchboard_requests_total", 4, method="tools/call")
    grew("switchboard_requests_total", 3, method="tools/call", outcome="ok")
    grew("switchboard_requests_total", 1, method="tools/call", outcome="error")
    grew("switchboard_requests_total", 1, method="unknown", outcome="error")
    grew("switchboard_request_duration_seconds_count", 4, method="tools/call")
    grew("switchboard_tool_calls_total", 2, tool="echo", template="echo", outcome="ok")
    # A tool error (isError) and an error answer are both the tool failing, not the agent.
    grew("switchboard_tool_calls_total", 2, tool="echo", template="echo", outcome="error")
    grew("switchboard_tool_call_duration_seconds_count", 4, tool="echo", template="echo")
    grew("switchboard_task_attempts_total", 1)
    grew("switchboard_task_assignment_latency_seconds_count", 1)
    grew("switchboard_events_published_total", 1)
    grew("switchboard_events_delivered_total", 1)
    assert value(after, "switchboard_tasks", state="COMPLETED") >= 1
    assert {dict(ls)["priority"] for (n, ls) in after if n == "switchboard_tasks_queued"} == {str(p) for p in range(1, 11)}
    assert value(after, "switchboard_connections", transport="tcp") >= 1
    assert total(after, "switchboard_received_bytes_total", transport="tcp") > total(before, "switchboard_received_bytes_total", transport="tcp")
    assert total(after, "switchboard_sent_bytes_total", transport="agent") > total(before, "switchboard_sent_bytes_total", transport="agent")
    assert value(after, "switchboard_agents", state="IDLE", health="HEALTHY") == 1
    assert value(after, "switchboard_template_instances", template="echo", healthy="true") == 1
    assert value(after, "switchboard_event_subscriptions") == 1
    # Histograms are cumulative: the +Inf bucket is the count.
    inf = value(after, "switchboard_request_duration_seconds_bucket", method="tools/call", le="+Inf")
    assert inf == value(after, "switchboard_request_duration_seconds_count", method="tools/call")

    # An agent that dies in a call: the call failed without an answer, and the agent is counted down.
    assert "error" in rpc.call("tools/call", {"name": "crash", "arguments": {"fail": "crash"}})
    crashed = scrape(base)
    assert total(crashed, "switchboard_tool_calls_total", tool="crash", outcome="failed") == 1


def test_no_label_takes_a_value_a_client_makes_up(start_gateway, tmp_path):
    gw = start_gateway("http", "tcp", extra=["--config", write_config(tmp_path, {"mcpServers": echo_servers()})])
    rpc = RpcSession.connect(gw.tcp)
    rpc.initialize()
    for n in range(50):
        assert "error" in rpc.call(f"made/up/{n}", {})
        assert "error" in rpc.call("tools/call", {"name": f"no-such-tool-{n}", "arguments": {}})
    samples = scrape(gw.endpoint("http").url)
    methods = {dict(labels).get("method") for (name, labels) in samples if name == "switchboard_requests_total"}
    assert not any(m and m.startswith("made/up") for m in methods), methods
    assert value(samples, "switchboard_requests_total", method="unknown", outcome="error") == 50
    tools = {dict(labels).get("tool") for (name, labels) in samples if name == "switchboard_tool_calls_total"}
    assert not any(t and t.startswith("no-such-tool") for t in tools), tools


def test_metrics_are_decided_like_every_method(start_gateway, tmp_path):
    config = {
        "mcpServers": echo_servers(),
        "auth": {"anonymous": "none", "apiKeys": [
            {"name": "prometheus", "sha256": sha256("scraper-key-0123456789"), "roles": ["monitor"]},
            {"name": "app", "sha256": sha256("client-key-0123456789"), "roles": ["client"]},
        ]},
    }
    gw = start_gateway("http", "tcp", extra=["--config", write_config(tmp_path, config)])
    base = gw.endpoint("http").url
    anonymous = httpx.get(f"{base}/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer resource_metadata=")
    refused = httpx.get(f"{base}/metrics", headers={"authorization": "Bearer client-key-0123456789"})
    assert refused.status_code == 403, refused.text
    samples = scrape(base, token="scraper-key-0123456789")
    assert [v for (n, _), v in samples.items() if n == "switchboard_build_info"] == [1.0]
    # The refusals themselves are counted.
    assert value(samples, "switchboard_access_refusals_total") >= 2


def test_a_workflow_run_is_one_trace_through_the_gateway_and_an_agent(start_gateway, tmp_path):
    with OTLPReceiver() as receiver:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "gateway-under-test"}
        workflow = tmp_path / "traced.yaml"
        workflow.write_text(
            "workflowName: traced\nversion: \"1.0.0\"\nsteps:\n"
            "  - id: first\n    type: agent_task\n    tool: traced_echo\n    input: {text: one}\n"
            "  - id: second\n    type: agent_task\n    tool: traced_echo\n    dependencies: [first]\n    input: {text: two}\n")
        config = {
            # A spawned agent gets only the environment its entry names: the gateway's own is not
            # passed on.
            "mcpServers": {"traced": {"command": sys.executable, "args": [str(TRACED_AGENT)], "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}}},
            "workflows": {"definitions": [str(workflow)]},
        }
        gw = start_gateway("tcp", extra=["--config", write_config(tmp_path, config)], env=env)
        rpc = RpcSession.connect(gw.tcp)
        rpc.initialize()
        ready(rpc, "traced_echo")
        execution = rpc.result("workflows/execute", {"workflowName": "traced", "_meta": {"traceparent": CALLER_TRACEPARENT}})

        def whole(spans):
            mine = [s for s in spans if s["trace_id"] == CALLER_TRACE]
            agent = [s for s in mine if s["service_name"] == "traced-agent" and s["kind"] == "SPAN_KIND_SERVER"]
            ours = [s for s in mine if s["service_name"] == "gateway-under-test"]
            ended = any(s["name"] == "workflow traced" for s in ours)
            return len(agent) == 2 and ended

        spans = [s for s in receiver.wait_for(whole, timeout=30) if s["trace_id"] == CALLER_TRACE]
        by_id = {s["span_id"]: s for s in spans}
        ours = [s for s in spans if s["service_name"] == "gateway-under-test"]
        request = next(s for s in ours if s["name"] == "workflows/execute")
        assert request["parent_span_id"] == CALLER_SPAN
        assert request["kind"] == "SPAN_KIND_SERVER"
        assert request["attributes"]["mcp.method.name"] == "workflows/execute"
        run = next(s for s in ours if s["name"] == "workflow traced")
        assert run["parent_span_id"] == request["span_id"]
        assert run["attributes"]["switchboard.workflow.execution_id"] == execution["executionId"]
        steps = {s["attributes"]["switchboard.workflow.step_id"]: s for s in ours if s["name"].startswith("workflow.step ")}
        assert set(steps) == {"first", "second"}
        assert all(step["parent_span_id"] == run["span_id"] for step in steps.values())
        calls = [s for s in ours if s["name"] == "tools/call traced_echo"]
        assert len(calls) == 2
        for call in calls:
            assert call["kind"] == "SPAN_KIND_CLIENT"
            assert call["attributes"]["gen_ai.tool.name"] == "traced_echo"
            assert call["attributes"]["gen_ai.operation.name"] == "execute_tool"
            assert by_id[call["parent_span_id"]]["name"].startswith("workflow.step ")
        # The agent's own spans hang from the gateway's call spans: it got their context in _meta.
        for served in (s for s in spans if s["service_name"] == "traced-agent" and s["kind"] == "SPAN_KIND_SERVER"):
            assert by_id[served["parent_span_id"]]["name"] == "tools/call traced_echo"


def test_a_call_joins_the_callers_trace_and_the_access_log_names_it(start_gateway, tmp_path):
    with OTLPReceiver() as receiver:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        config = {
            "mcpServers": {"traced": {"command": sys.executable, "args": [str(TRACED_AGENT)], "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}}},
            "logging": {"accessLog": True},
        }
        gw = start_gateway("http", "tcp", extra=["--config", write_config(tmp_path, config), "--log-format", "json"], env=env)
        base = gw.endpoint("http").url
        # Over HTTP the context comes in the traceparent header, as an HTTP client sends it.
        reply = httpx.post(
            f"{base}/mcp",
            headers={"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28", "traceparent": CALLER_TRACEPARENT,
                     "mcp-method": "tools/call", "mcp-name": "traced_echo"},
            json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "traced_echo", "arguments": {"text": "hi"},
                  "_meta": {"io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}, "io.modelcontextprotocol/clientCapabilities": {}}}},
            timeout=30)
        assert reply.status_code == 200, reply.text
        text = reply.json()["result"]["content"][0]["text"]
        # The agent saw the gateway's call span as its parent, in the caller's trace.
        assert text.startswith(f"traced:hi:00-{CALLER_TRACE}-")
        assert CALLER_SPAN not in text
        def gateway_request(ss):
            return next((s for s in ss if s["trace_id"] == CALLER_TRACE and s["kind"] == "SPAN_KIND_SERVER" and s["service_name"] == "switchboard"), None)

        spans = receiver.wait_for(lambda ss: gateway_request(ss) and any(s["service_name"] == "traced-agent" for s in ss if s["trace_id"] == CALLER_TRACE))
        request = gateway_request(spans)
        assert request["name"] == "tools/call traced_echo"
        assert request["parent_span_id"] == CALLER_SPAN
        line = gw.wait_log(r'"message":"request".*"method":"tools/call"')
        entry = json.loads(line)
        assert entry["trace_id"] == CALLER_TRACE
        assert entry["outcome"] == "ok"
        assert entry["transport"] == "http"
        assert float(entry["durationMs"]) > 0
        # And the HTTP exchange its own line, with the status the client got.
        exchange = json.loads(gw.wait_log(r'"message":"http".*"path":"/mcp"'))
        assert exchange["status"] == "200" and exchange["httpMethod"] == "POST" and exchange["trace_id"] == CALLER_TRACE
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200
        scraped = json.loads(gw.wait_log(r'"message":"http".*"path":"/metrics"'))
        assert scraped["status"] == "200"


def test_the_history_answers_by_minute_hour_and_day_and_survives_a_restart(start_gateway, tmp_path):
    config = write_config(tmp_path, {"mcpServers": echo_servers(), "workflows": {"stateDirectory": str(tmp_path / "state")}})
    gw = start_gateway("http", "tcp", extra=["--config", config])
    base = gw.endpoint("http").url
    rpc = RpcSession.connect(gw.tcp)
    rpc.initialize()
    ready(rpc)
    for n in range(5):
        rpc.result("tools/call", {"name": "echo", "arguments": {"text": str(n)}})
    rpc.result("tools/call", {"name": "echo", "arguments": {"fail": "tool"}})
    agent = rpc.result("agents/list")["agents"][0]["agentId"]

    def figures(period):
        reply = httpx.get(f"{base}/api/v1/agents/{quote(agent, safe='')}/metrics", params={"period": period})
        assert reply.status_code == 200, reply.text
        points = reply.json()["points"]
        return sum(p["calls"] for p in points), sum(p["errors"] for p in points), points

    for period in ("minute", "hour", "day"):
        calls, errors, points = figures(period)
        assert (calls, errors) == (6, 1), (period, points)
        latest = points[-1]
        assert latest["period"] == period
        assert latest["tools"]["echo"]["calls"] >= 1
        assert 0 < latest["latency"]["p50"] <= latest["latency"]["p99"] <= latest["latency"]["max"]
    one_tool = rpc.result("metrics/history", {"agentId": agent, "period": "hour", "tool": "echo"})
    assert sum(p["calls"] for p in one_tool["points"]) == 6
    rpc.close()
    assert gw.stop() == 0

    gw = start_gateway("http", "tcp", extra=["--config", config])
    base = gw.endpoint("http").url
    for period in ("minute", "hour", "day"):
        calls, errors, points = figures(period)
        assert (calls, errors) == (6, 1), (period, points)


def test_history_of_another_tenants_agent_is_not_found(start_gateway, tmp_path):
    config = {
        "mcpServers": {"echo": {**echo_servers()["echo"], "tenants": ["blue"]}},
        "auth": {"anonymous": "none", "apiKeys": [
            {"name": "b", "sha256": sha256("blue-key-0123456789"), "roles": ["client", "viewer"], "tenant": "blue"},
            {"name": "r", "sha256": sha256("red-key-01234567890"), "roles": ["client", "viewer"], "tenant": "red"},
        ]},
    }
    gw = start_gateway("http", "tcp", extra=["--config", write_config(tmp_path, config)])
    base = gw.endpoint("http").url
    blue = {"authorization": "Bearer blue-key-0123456789"}
    agents = httpx.get(f"{base}/api/v1/agents", headers=blue).json()["agents"]
    agent = agents[0]["agentId"]
    assert httpx.get(f"{base}/api/v1/agents/{quote(agent, safe='')}/metrics", headers=blue).status_code == 200
    red = httpx.get(f"{base}/api/v1/agents/{quote(agent, safe='')}/metrics", headers={"authorization": "Bearer red-key-01234567890"})
    assert red.status_code in (400, 404), red.text
    assert f'no agent "{agent}"' in red.json()["error"]["message"]


def test_messages_are_recorded_with_sent_delivered_and_acknowledged_times(start_gateway, tmp_path):
    gw = start_gateway("tcp")
    listener = RpcSession.connect(gw.tcp)
    listener.initialize()
    listener.result("agents/register", {"agentName": "inbox", "capabilities": ["mail"]})
    sender = RpcSession.connect(gw.tcp)
    sender.initialize()
    sent = sender.result("messages/send", {"targetAgentId": "inbox", "messageType": "notification", "messageData": {"hello": 1}})
    note = listener.wait_notification("notifications/messages/message")
    assert note["params"]["messageId"] == sent["messageId"]
    page = sender.result("messages/list", {})
    entry = next(m for m in page["messages"] if m["messageId"] == sent["messageId"])
    assert entry["sentAt"] and entry["deliveredAt"] and entry["acknowledgedAt"] is None
    assert entry["messageType"] == "notification"
    listener.result("messages/acknowledge", {"messageId": sent["messageId"]})
    entry = next(m for m in sender.result("messages/list", {"agentId": entry["to"][0]})["messages"] if m["messageId"] == sent["messageId"])
    assert entry["acknowledgedAt"] >= entry["deliveredAt"] >= entry["sentAt"]
    # Only a recipient acknowledges.
    refused = sender.call("messages/acknowledge", {"messageId": sent["messageId"]})
    assert refused["error"]["code"] == -32602
    # Pages go newest first and end.
    for n in range(3):
        sender.result("messages/send", {"targetAgentId": "inbox", "messageType": "notification", "messageData": n})
    first = sender.result("messages/list", {"limit": 2})
    assert len(first["messages"]) == 2 and first["nextCursor"]
    rest = sender.result("messages/list", {"limit": 10, "cursor": first["nextCursor"]})
    assert len(rest["messages"]) == 2 and "nextCursor" not in rest
    assert first["messages"][0]["sentAt"] >= rest["messages"][-1]["sentAt"]


class _Webhook(BaseHTTPRequestHandler):
    received: list = []
    cond = threading.Condition()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.cond:
            self.received.append(body)
            self.cond.notify_all()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_alert_fires_and_resolves(start_gateway, tmp_path):
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        config = {
            "mcpServers": echo_servers(),
            "egress": {"allow": ["127.0.0.1"]},
            "alerts": {"evaluateSeconds": 0.1, "rules": [
                {"name": "echo-errors", "measure": "errorRate", "above": 0.5, "window": "1m", "for": "0s", "topic": "ops.alerts",
                 "severity": "page", "webhook": f"http://127.0.0.1:{hook.server_address[1]}/alerts"},
                {"name": "no-ghosts", "measure": "healthyInstances", "template": "ghost", "below": 1},
            ]},
        }
        gw = start_gateway("http", "tcp", extra=["--config", write_config(tmp_path, config)])
        rpc = RpcSession.connect(gw.tcp)
        rpc.initialize()
        ready(rpc)
        rpc.result("events/subscribe", {"topic": "ops.alerts"})
        # A template with no healthy instance fires at its first judgement, before anyone could
        # subscribe: the status shows it.
        deadline = time.monotonic() + 20
        while not any(a["alert"] == "no-ghosts" and a["state"] == "firing" for a in rpc.result("gateway/status")["alerts"]["active"]):
            assert time.monotonic() < deadline, rpc.result("gateway/status")["alerts"]
            time.sleep(0.05)
        ghost = next(a for a in rpc.result("gateway/status")["alerts"]["active"] if a["alert"] == "no-ghosts")
        assert ghost["subject"] == "ghost" and ghost["value"] == 0

        for _ in range(3):
            rpc.result("tools/call", {"name": "echo", "arguments": {"fail": "tool"}})
        firing = rpc.wait_notification("notifications/events/message", match=lambda n: n["params"]["data"]["alert"] == "echo-errors")
        data = firing["params"]["data"]
        assert firing["params"]["topic"] == "ops.alerts"
        assert data["state"] == "firing" and data["severity"] == "page" and data["value"] > 0.5
        status = rpc.result("gateway/status")
        active = {(a["alert"], a["state"]) for a in status["alerts"]["active"]}
        assert ("echo-errors", "firing") in active and ("no-ghosts", "firing") in active

        # Enough good calls bring the rate under the threshold: resolved.
        for n in range(6):
            rpc.result("tools/call", {"name": "echo", "arguments": {"text": str(n)}})
        resolved = rpc.wait_notification(
            "notifications/events/message", match=lambda n: n["params"]["data"]["alert"] == "echo-errors" and n["params"]["data"]["state"] == "resolved")
        assert resolved["params"]["data"]["value"] <= 0.5
        assert "echo-errors" not in {a["alert"] for a in rpc.result("gateway/status")["alerts"]["active"]}
        # The webhook heard both, through the egress rules.
        with _Webhook.cond:
            assert _Webhook.cond.wait_for(
                lambda: {(b["alert"], b["state"]) for b in _Webhook.received} >= {("echo-errors", "firing"), ("echo-errors", "resolved")}, timeout=20)
        samples = scrape(gw.endpoint("http").url)
        assert value(samples, "switchboard_alert_transitions_total") >= 3
    finally:
        hook.shutdown()


def test_an_alert_rule_with_a_mistake_is_refused_at_start(sb_bin, tmp_path):
    import subprocess
    config = write_config(tmp_path, {"alerts": [{"name": "bad", "measure": "errorRate"}, {"name": "worse", "measure": "nope", "above": 1}]})
    done = subprocess.run([str(sb_bin), "config", "check", config], capture_output=True, text=True)
    assert done.returncode != 0
    assert "alert bad needs a threshold: above: N or below: N" in done.stderr + done.stdout
    assert 'unknown measure "nope"' in done.stderr + done.stdout


def test_replicas_sharing_redis_answer_one_history(start_gateway, tmp_path):
    from test_replicas import RedisServer, TASK_AGENT, until
    from sbwire import LoggedProcess

    server = RedisServer()
    server.start()
    agent = None
    try:
        config = write_config(tmp_path, {"history": {"flushSeconds": 0.2}})
        gateways = {name: start_gateway("tcp", extra=["--config", config, "--redis", server.url, "--replica-id", name]) for name in ("r1", "r2")}
        address = gateways["r2"].tcp.address
        agent = LoggedProcess([sys.executable, TASK_AGENT, f"tcp://{address[0]}:{address[1]}", "--name", "weather", "--label", "w",
                               "--tool", "forecast"])
        agent.wait_line(r"registered as (\S+)")
        sessions = {name: RpcSession.connect(gw.tcp) for name, gw in gateways.items()}
        for rpc in sessions.values():
            rpc.initialize()
            until(lambda: "forecast" in {t["name"] for t in rpc.result("tools/list")["tools"]}, "the agent's tool at every replica")
        for n in range(3):
            sessions["r1"].result("tools/call", {"name": "forecast", "arguments": {"text": str(n)}})
        for n in range(2):
            sessions["r2"].result("tools/call", {"name": "forecast", "arguments": {"text": str(n)}})
        agent_id = next(a["agentId"] for a in sessions["r1"].result("agents/list")["agents"] if a["agentName"] == "weather")

        def calls_seen_at(name):
            points = sessions[name].result("metrics/history", {"agentId": agent_id, "period": "hour"})["points"]
            return sum(p["calls"] for p in points)

        # Each replica writes what it relayed; either one reads both (once the other has written).
        try:
            until(lambda: calls_seen_at("r1") == 5 and calls_seen_at("r2") == 5, "both replicas' calls in one history")
        except AssertionError:
            raise AssertionError(json.dumps([sessions[n].result("metrics/history", {"agentId": agent_id, "period": "minute"}) for n in ("r1", "r2")])[:3000])
        assert calls_seen_at("r1") == 5
    finally:
        if agent:
            agent.kill()
        server.cleanup()
