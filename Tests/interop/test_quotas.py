"""Quotas on what principals and tenants hold at once (protocol-spec 12.7.2): connections,
subscriptions, unfinished tasks and registered agents. A hold past a quota is -32008 naming it;
what ends gives its hold back; with replicas the counts are shared, and a replica that is gone
has its holdings given back by the others.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

from sbwire import REPO, RpcSession, jline, req
from test_replicas import RedisServer

LIMITED = -32008
TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "stdio_tool_server.py"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def gateway_config(tmp_path, quotas: dict) -> str:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({
        "auth": {
            "anonymous": "none",
            "apiKeys": [
                {"name": "alice", "sha256": sha256("key-alice"), "roles": ["client"], "tenant": "acme"},
                {"name": "bob", "sha256": sha256("key-bob"), "roles": ["client"], "tenant": "acme"},
                {"name": "carol", "sha256": sha256("key-carol"), "roles": ["client"], "tenant": "globex"},
                {"name": "pricing-bot", "sha256": sha256("key-bot"), "roles": ["agent"], "agentNames": ["pricing"]},
            ],
            "quotas": quotas,
        },
        "mcpServers": {"slow": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "nap"]}},
    }))
    return str(path)


def connect(endpoint, key: str | None = None) -> tuple[RpcSession, dict]:
    session = RpcSession.connect(endpoint)
    session.initialize()
    reply = session.call("auth/authenticate", {"token": key}) if key else {}
    return session, reply


def until(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not so within {timeout}s"
        time.sleep(0.05)


def test_a_principal_holds_at_most_its_connections_and_a_closed_one_frees_its_place(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {"principal": {"connections": 2}})])
    first, ok1 = connect(gw.tcp, "key-alice")
    second, ok2 = connect(gw.tcp, "key-alice")
    assert "result" in ok1 and "result" in ok2
    # The same principal again on one of its connections takes nothing more.
    assert "result" in second.call("auth/authenticate", {"token": "key-alice"})
    third, refused = connect(gw.tcp, "key-alice")
    error = refused["error"]
    assert error["code"] == LIMITED, refused
    assert error["data"]["limit"] == "quota:connections:principal" and error["data"]["principal"] == "alice", error
    assert "principal alice may hold at most 2 connections at once and holds 2" in error["message"], error
    assert "retryAfterMs" not in error["data"]
    # Refused, the connection stays as it was: unauthenticated.
    assert third.call("auth/whoami")["result"]["principal"] == "anonymous"
    # Another principal has its own count.
    other, ok = connect(gw.tcp, "key-bob")
    assert "result" in ok
    first.close()
    until(lambda: "result" in third.call("auth/authenticate", {"token": "key-alice"}), "a place freed by the closed connection")
    for session in (second, third, other):
        session.close()


def test_subscriptions_past_a_tenants_quota_are_refused_until_one_ends(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {"tenants": {"acme": {"subscriptions": 2}}})])
    alice, _ = connect(gw.tcp, "key-alice")
    bob, _ = connect(gw.tcp, "key-bob")
    carol, _ = connect(gw.tcp, "key-carol")
    first = alice.call("events/subscribe", {"topic": "prices"})["result"]["subscriptionId"]
    assert "result" in bob.call("events/subscribe", {"topic": "news"})
    refused = bob.call("events/subscribe", {"topic": "more"})
    assert refused["error"]["code"] == LIMITED and refused["error"]["data"]["limit"] == "quota:subscriptions:tenant", refused
    assert "tenant acme may hold at most 2 subscriptions" in refused["error"]["message"]
    # Another tenant is not counted with acme.
    assert "result" in carol.call("events/subscribe", {"topic": "prices"})
    assert alice.call("events/unsubscribe", {"subscriptionId": first})["result"]["unsubscribed"] is True
    until(lambda: "result" in bob.call("events/subscribe", {"topic": "more"}), "a subscription's place given back")
    # A closed connection gives its subscriptions back too.
    bob.close()
    until(lambda: "result" in alice.call("events/subscribe", {"topic": "again"}), "the closed connection's subscriptions given back")
    for session in (alice, carol):
        session.close()


def test_unfinished_tasks_past_a_principals_quota_are_refused_and_a_finished_one_frees_its_place(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {"principal": {"queuedTasks": 2}})])
    alice, _ = connect(gw.tcp, "key-alice")
    until(lambda: {t["name"] for t in alice.call("tools/list")["result"]["tools"]} >= {"nap"}, "the nap tool")
    long = alice.call("tasks/submit", {"taskType": "nap", "taskData": {"sleep": 60}})["result"]
    short = alice.call("tasks/submit", {"taskType": "nap", "taskData": {"sleep": 0.2}})["result"]
    refused = alice.call("tasks/submit", {"taskType": "nap", "taskData": {}})
    assert refused["error"]["code"] == LIMITED and refused["error"]["data"]["limit"] == "quota:queuedTasks:principal", refused
    assert "principal alice may hold at most 2 unfinished tasks at once and holds 2" in refused["error"]["message"]
    # A task made of a tools/call counts too.
    as_task = alice.call("tools/call", {"name": "nap", "arguments": {}, "task": {"ttl": 60000}})
    assert as_task["error"]["code"] == LIMITED, as_task
    assert alice.call("tasks/result", {"taskId": short["taskId"]}, timeout=30)
    k2 = until(lambda: alice.call("tasks/submit", {"taskType": "nap", "taskData": {"sleep": 60}, "idempotencyKey": "k2"}).get("result"),
               "the finished task's place given back")
    # Sent again (as after a lost reply), a submission is answered its task, though the quota is full.
    repeat = alice.call("tasks/submit", {"taskType": "nap", "taskData": {"sleep": 60}, "idempotencyKey": "k2"})
    assert repeat.get("result", {}).get("taskId") == k2["taskId"], repeat
    assert alice.call("tasks/submit", {"taskType": "nap", "taskData": {}})["error"]["code"] == LIMITED
    alice.call("tasks/cancel", {"taskId": long["taskId"]})
    until(lambda: "result" in alice.call("tasks/submit", {"taskType": "nap", "taskData": {}}), "the cancelled task's place given back")
    alice.close()


def test_an_agent_principal_registers_at_most_its_quota_of_agents(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {"principal": {"agentInstances": 1}})])
    tool = {"name": "quote", "inputSchema": {"type": "object"}}
    first, _ = connect(gw.tcp, "key-bot")
    assert "result" in first.call("agents/register", {"agentName": "pricing", "tools": [tool]})
    second, _ = connect(gw.tcp, "key-bot")
    refused = second.call("agents/register", {"agentName": "pricing", "tools": [tool]})
    assert refused["error"]["code"] == LIMITED and refused["error"]["data"]["limit"] == "quota:agentInstances:principal", refused
    first.close()
    until(lambda: "result" in second.call("agents/register", {"agentName": "pricing", "tools": [tool]}), "the closed agent's place")
    second.close()


def test_replicas_share_a_quota_and_give_back_what_a_gone_replica_held(start_gateway, tmp_path):
    redis = RedisServer()
    redis.start()
    try:
        config = gateway_config(tmp_path, {"principal": {"connections": 2}})
        r1, r2 = (start_gateway("tcp", extra=["--redis", redis.url, "--replica-id", name, "--config", config]) for name in ("r1", "r2"))
        at_r1, ok1 = connect(r1.tcp, "key-alice")
        at_r2, ok2 = connect(r2.tcp, "key-alice")
        assert "result" in ok1 and "result" in ok2
        for gw in (r1, r2):
            extra, refused = connect(gw.tcp, "key-alice")
            assert refused["error"]["code"] == LIMITED, refused
            extra.close()
        # r1 dies without a word: r2 finds it gone and gives its holdings back.
        r1.proc.kill()
        r1.proc.wait()
        late, _ = connect(r2.tcp)
        until(lambda: "result" in late.call("auth/authenticate", {"token": "key-alice"}), "r1's connection given back", timeout=40)
        for session in (at_r2, late):
            session.close()
    finally:
        redis.cleanup()


def test_a_register_pipelined_behind_another_is_refused_and_holds_nothing(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {"principal": {"agentInstances": 2}})])
    tool = {"name": "quote", "inputSchema": {"type": "object"}}
    first, _ = connect(gw.tcp, "key-bot")
    ids = [first.next_id(), first.next_id()]
    first.sock.sendall(b"".join(jline(req("agents/register", id_, {"agentName": "pricing", "tools": [tool]})) for id_ in ids))
    replies = [first.reply(id_) for id_ in ids]
    assert ["result" in r for r in replies] == [True, False], replies
    # One agent, one hold: a second connection may register, a third may not.
    second, _ = connect(gw.tcp, "key-bot")
    assert "result" in second.call("agents/register", {"agentName": "pricing", "tools": [tool]})
    third, _ = connect(gw.tcp, "key-bot")
    assert third.call("agents/register", {"agentName": "pricing", "tools": [tool]})["error"]["code"] == LIMITED
    for session in (first, second, third):
        session.close()


def test_a_token_in_the_request_does_not_let_a_connection_authenticate_past_its_quota(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {"principal": {"connections": 1}})])
    first, ok = connect(gw.tcp, "key-alice")
    assert "result" in ok
    modern = RpcSession.connect(gw.tcp)
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.switchboard/token": "key-alice"}
    refused = modern.call("auth/authenticate", {"token": "key-alice", "_meta": meta})
    assert refused["error"]["code"] == LIMITED, refused
    for session in (first, modern):
        session.close()


def test_a_tenants_memory_is_held_to_its_keys_and_bytes(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {"tenants": {"acme": {"memoryKeys": 2, "memoryBytes": 64}}})])
    alice, _ = connect(gw.tcp, "key-alice")
    bob, _ = connect(gw.tcp, "key-bob")
    carol, _ = connect(gw.tcp, "key-carol")
    assert "result" in alice.call("memory/set", {"namespace": "plans", "key": "k1", "value": "one"})
    assert "result" in bob.call("memory/set", {"namespace": "notes", "key": "k2", "value": "two"})
    refused = alice.call("memory/set", {"namespace": "plans", "key": "k3", "value": "three"})
    assert refused["error"]["code"] == LIMITED and refused["error"]["data"]["limit"] == "quota:memoryKeys:tenant", refused
    assert "tenant acme may hold at most 2 memory keys at once and holds 2" in refused["error"]["message"], refused
    # Overwriting a key is not a new key; growing past the bytes is refused.
    assert "result" in alice.call("memory/set", {"namespace": "plans", "key": "k1", "value": "uno"})
    big = alice.call("memory/set", {"namespace": "plans", "key": "k1", "value": "x" * 100})
    assert big["error"]["data"]["limit"] == "quota:memoryBytes:tenant", big
    assert alice.call("memory/cas", {"namespace": "plans", "key": "k3", "expectedVersion": 0, "value": 1})["error"]["code"] == LIMITED
    # Another tenant has its own memory.
    for i in range(4):
        assert "result" in carol.call("memory/set", {"key": f"c{i}", "value": i})
    # A delete gives room back, and so does an expiry.
    assert bob.call("memory/delete", {"namespace": "notes", "key": "k2"})["result"]["deleted"] is True
    assert "result" in alice.call("memory/set", {"namespace": "plans", "key": "k3", "value": "three", "ttlSeconds": 2})
    assert alice.call("memory/set", {"namespace": "plans", "key": "k4", "value": 4})["error"]["code"] == LIMITED
    until(lambda: "result" in alice.call("memory/set", {"namespace": "plans", "key": "k4", "value": 4}), "the expired key's room")
    for session in (alice, bob, carol):
        session.close()


def test_replicas_share_a_tenants_memory_quota(start_gateway, tmp_path):
    redis = RedisServer()
    redis.start()
    try:
        config = gateway_config(tmp_path, {"tenants": {"acme": {"memoryKeys": 2}}})
        r1, r2 = (start_gateway("tcp", extra=["--redis", redis.url, "--replica-id", name, "--config", config]) for name in ("r1", "r2"))
        at_r1, _ = connect(r1.tcp, "key-alice")
        at_r2, _ = connect(r2.tcp, "key-bob")
        assert "result" in at_r1.call("memory/set", {"key": "a", "value": 1})
        assert "result" in at_r2.call("memory/set", {"key": "b", "value": 2})
        for session in (at_r1, at_r2):
            assert session.call("memory/set", {"key": "c", "value": 3})["error"]["data"]["limit"] == "quota:memoryKeys:tenant"
        assert "result" in at_r2.call("memory/delete", {"key": "a"})
        assert "result" in at_r1.call("memory/set", {"key": "c", "value": 3})
        for session in (at_r1, at_r2):
            session.close()
    finally:
        redis.cleanup()
