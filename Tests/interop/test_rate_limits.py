"""Rate limits per principal and per tenant (protocol-spec 12.7): a refusal is -32008 and says
when to retry; a limit spread over two replicas lets through its rate in total; requests still
run in the order they came while Redis decides.

Clients pipeline as real ones do: a burst of requests in one write, then the replies.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from sbwire import RpcSession, jline, req
from test_replicas import RedisServer

LIMITED = -32008


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def gateway_config(tmp_path, rate_limits: dict, alice_limit: dict | None = None) -> str:
    alice = {"name": "alice", "sha256": sha256("key-alice"), "roles": ["client"], "tenant": "acme"}
    if alice_limit:
        alice["rateLimit"] = alice_limit
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"auth": {
        "anonymous": "none",
        "apiKeys": [
            alice,
            {"name": "bob", "sha256": sha256("key-bob"), "roles": ["client"], "tenant": "acme"},
            {"name": "carol", "sha256": sha256("key-carol"), "roles": ["client"], "tenant": "globex"},
        ],
        "rateLimits": rate_limits,
    }}))
    return str(path)


def signed_in(endpoint, key: str) -> RpcSession:
    session = RpcSession.connect(endpoint)
    session.initialize()
    assert "result" in session.call("auth/authenticate", {"token": key})
    return session


def burst(session: RpcSession, method: str, count: int, params=None) -> list[dict]:
    """`count` requests in one write; their replies in id order."""
    ids = [session.next_id() for _ in range(count)]
    session.sock.sendall(b"".join(jline(req(method, id_, params)) for id_ in ids))
    return [session.reply(id_) for id_ in ids]


def test_a_principal_past_its_rate_is_refused_with_when_to_retry(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {}, alice_limit={"perSecond": 1, "burst": 3})])
    with signed_in(gw.tcp, "key-alice") as alice:
        replies = burst(alice, "tools/list", 6)
        assert ["result" in r for r in replies] == [True] * 3 + [False] * 3, replies
        refusal = replies[3]["error"]
        assert refusal["code"] == LIMITED, refusal
        assert refusal["data"]["principal"] == "alice" and refusal["data"]["limit"] == "rate:principal", refusal
        assert "principal alice may make 1 requests per second, in bursts of at most 3" in refusal["message"], refusal
        wait_ms = refusal["data"]["retryAfterMs"]
        assert 0 < wait_ms <= 1000, refusal
        # Keeping the session alive and asking who one is are not counted.
        assert "result" in alice.call("ping") and alice.call("auth/whoami")["result"]["principal"] == "alice"
        # As a client told when to retry does.
        time.sleep(wait_ms / 1000)
        assert "result" in alice.call("tools/list")
        assert alice.call("tools/list")["error"]["code"] == LIMITED
    # Another principal is not touched by alice's limit.
    with signed_in(gw.tcp, "key-bob") as bob:
        assert all("result" in r for r in burst(bob, "tools/list", 10))


def test_a_tenants_limit_is_shared_by_its_principals_and_no_other_tenants(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, {
        "tenants": {"acme": {"perSecond": 0.5, "burst": 4}}})])
    with signed_in(gw.tcp, "key-alice") as alice, signed_in(gw.tcp, "key-bob") as bob, signed_in(gw.tcp, "key-carol") as carol:
        assert all("result" in r for r in burst(alice, "tools/list", 3))
        replies = burst(bob, "tools/list", 3)
        assert ["result" in r for r in replies] == [True, False, False], replies
        assert replies[1]["error"]["data"]["limit"] == "rate:tenant" and replies[1]["error"]["data"]["principal"] == "bob"
        assert "tenant acme may make 0.5 requests per second" in replies[1]["error"]["message"]
        assert all("result" in r for r in burst(carol, "tools/list", 10))


def test_a_limit_spread_over_two_replicas_lets_its_rate_through_in_total(start_gateway, tmp_path):
    redis = RedisServer()
    redis.start()
    try:
        rate, burst_size, seconds = 40, 8, 3.0
        config = gateway_config(tmp_path, {}, alice_limit={"perSecond": rate, "burst": burst_size})
        gateways = [start_gateway("tcp", extra=["--redis", redis.url, "--replica-id", name, "--config", config]) for name in ("r1", "r2")]
        sessions = [signed_in(gw.tcp, "key-alice") for gw in gateways for _ in range(2)]
        allowed = [0] * len(sessions)
        errors: list = []
        start = threading.Barrier(len(sessions))
        spans: list = []

        def hammer(index: int, session: RpcSession):
            start.wait()
            began = time.monotonic()
            while time.monotonic() - began < seconds:
                reply = session.call("tools/list")
                if "result" in reply:
                    allowed[index] += 1
                elif reply.get("error", {}).get("code") != LIMITED:
                    errors.append(reply)
            spans.append(time.monotonic() - began)

        threads = [threading.Thread(target=hammer, args=(i, s)) for i, s in enumerate(sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for session in sessions:
            session.close()
        assert not errors, errors[:3]
        expected = burst_size + rate * max(spans)
        assert abs(sum(allowed) - expected) <= 0.1 * expected, f"allowed {allowed} (total {sum(allowed)}), expected about {expected:.0f}"
        # Both replicas took part.
        assert sum(allowed[:2]) > 0 and sum(allowed[2:]) > 0, allowed
    finally:
        redis.cleanup()


def test_while_redis_decides_pipelined_requests_still_run_in_order(start_gateway, tmp_path):
    redis = RedisServer()
    redis.start()
    try:
        config = gateway_config(tmp_path, {"principal": {"perSecond": 10000, "burst": 10000}})
        gw = start_gateway("tcp", extra=["--redis", redis.url, "--replica-id", "r1", "--config", config])
        with signed_in(gw.tcp, "key-alice") as alice:
            for round_ in range(20):
                ids = [alice.next_id(), alice.next_id()]
                alice.sock.sendall(jline(req("memory/set", ids[0], {"key": "order", "value": round_}))
                                   + jline(req("memory/get", ids[1], {"key": "order"})))
                replies = {id_: alice.reply(id_) for id_ in ids}
                assert "result" in replies[ids[0]], replies
                assert replies[ids[1]]["result"]["value"] == round_, replies
    finally:
        redis.cleanup()
