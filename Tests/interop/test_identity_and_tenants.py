"""Principals proved by API keys and JWTs (protocol-spec 12.1, 12.2), tenants that cannot see
each other's tasks, memory or events (12.4), and the audit trail (12.9) of a real session.

Keys are real: RSA and EC keys made here with `cryptography`, a JWKS file the gateway reads, tokens
signed with PyJWT, as an identity provider would issue them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sbwire import REPO, RpcSession, jline, req, switchboard_bin

TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "stdio_tool_server.py"
UNAUTHENTICATED = -32007
FORBIDDEN = -32005
ISSUER = "https://login.example.test"
AUDIENCE = "switchboard"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def signing_keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_public, ec_public = rsa_key.public_key().public_numbers(), ec_key.public_key().public_numbers()
    jwks = {"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b64(rsa_public.n), "e": b64(rsa_public.e)},
        {"kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(ec_public.x).rjust(43, "A"),
         "y": b64(ec_public.y).rjust(43, "A")},
    ]}
    return {"rsa": rsa_key, "ec": ec_key, "jwks": jwks}


def token(key, kid: str, algorithm: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "iat": now, "exp": now + 300, "roles": ["client"], "tenant": "initech"}
    body.update(claims)
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


def gateway_config(tmp_path, signing_keys, agents: dict | None = None, **extra) -> str:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(signing_keys["jwks"]))
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({
        "auth": {
            "anonymous": "none",
            "apiKeys": [
                {"name": "alice", "sha256": sha256("key-alice"), "roles": ["client", "flows"], "tenant": "acme"},
                {"name": "bob", "sha256": sha256("key-bob"), "roles": ["client", "flows"], "tenant": "globex"},
                {"name": "ops", "sha256": sha256("key-ops"), "roles": ["operator"]},
                {"name": "root", "sha256": sha256("key-root"), "roles": ["admin"]},
                {"name": "acme-bot", "sha256": sha256("key-acme-bot"), "roles": ["agent"], "tenant": "acme", "agentNames": ["acme-helper", "worker"]},
                {"name": "globex-bot", "sha256": sha256("key-globex-bot"), "roles": ["agent"], "tenant": "globex",
                 "agentNames": ["globex-helper", "worker"]},
            ],
            "jwt": {"issuer": ISSUER, "audiences": [AUDIENCE], "jwksFile": str(jwks)},
            "roles": {"flows": {"allow": ["workflows/*"]}},
        },
        "mcpServers": {"echo": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "echo"]}, **(agents or {})},
        **extra,
    }))
    return str(path)


def signed_in(gw, credential: str) -> RpcSession:
    session = RpcSession.connect(gw.tcp)
    session.initialize()
    reply = session.call("auth/authenticate", {"token": credential})
    assert "result" in reply, reply
    return session


def test_api_keys_are_principals_and_an_unknown_key_is_refused_without_repeating_it(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        assert session.call("tools/list")["error"]["code"] == FORBIDDEN
        refused = session.call("auth/authenticate", {"token": "key-mallory"})
        assert refused["error"]["code"] == UNAUTHENTICATED, refused
        assert "key-mallory" not in json.dumps(refused)
        ok = session.call("auth/authenticate", {"token": "key-alice"})["result"]
        assert ok == {"principal": "alice", "roles": ["client", "flows"], "tenant": "acme", "proof": "apiKey",
                      "authenticated": True, "accessControl": True}
        assert {tool["name"] for tool in session.call("tools/list")["result"]["tools"]} == {"echo"}
        assert session.call("agents/scale", {"template": "echo", "instances": 40})["error"]["code"] == FORBIDDEN
    assert "key-alice" not in gw.stderr_text() and "key-mallory" not in gw.stderr_text()


def test_a_jwt_signed_by_a_key_in_the_jwks_file_is_accepted_and_bad_ones_are_refused(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        for key, kid, alg in [(signing_keys["rsa"], "rsa-1", "RS256"), (signing_keys["ec"], "ec-1", "ES256")]:
            result = session.call("auth/authenticate", {"token": token(key, kid, alg)})["result"]
            assert result["principal"] == "carol" and result["proof"] == "jwt" and result["tenant"] == "initech", result
        now = int(time.time())
        unsigned = (base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=") + b"."
                    + base64.urlsafe_b64encode(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": now + 300}).encode()).rstrip(b"=")
                    + b".").decode()
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cases = {
            "expired": token(signing_keys["rsa"], "rsa-1", "RS256", exp=now - 3600, iat=now - 7200),
            "another audience": token(signing_keys["rsa"], "rsa-1", "RS256", aud="someone-else"),
            "an unknown key": token(other_key, "rsa-unknown", "RS256"),
            "signed none": unsigned,
            "signed by another key under a known kid": token(other_key, "rsa-1", "RS256"),
        }
        for case, bad in cases.items():
            reply = session.call("auth/authenticate", {"token": bad})
            assert reply.get("error", {}).get("code") == UNAUTHENTICATED, (case, reply)
            assert bad not in json.dumps(reply), case
        # The refusals left the connection as it was: still carol.
        assert session.call("auth/whoami")["result"]["principal"] == "carol"


def test_two_tenants_on_one_gateway_see_nothing_of_each_other(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    with signed_in(gw, "key-alice") as alice, signed_in(gw, "key-bob") as bob:
        # Tasks.
        task = alice.call("tasks/submit", {"tool": "echo", "arguments": {"text": "secret"}})["result"]
        task_id = task["taskId"]
        assert task["ownerTenant"] == "acme" and task["submittedBy"] == "alice"
        missing = "task-1"
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            # Exactly the answer for a task that does not exist: not found, not refused.
            reply = bob.call(method, {"taskId": task_id})["error"]
            absent = bob.call(method, {"taskId": missing})["error"]
            assert json.dumps(reply).replace(task_id, "ID") == json.dumps(absent).replace(missing, "ID"), (method, reply, absent)
            assert reply["message"] == f'Invalid params: no task "{task_id}"', reply
        assert task_id not in json.dumps(bob.call("tasks/list")["result"])
        assert task_id in json.dumps(alice.call("tasks/list")["result"])
        assert alice.call("tasks/result", {"taskId": task_id})["result"]["content"][0]["text"] == "server:secret"

        # Memory: the same namespace and key are two keys.
        assert "result" in alice.call("memory/set", {"namespace": "shared", "key": "plan", "value": "acme's"})
        assert bob.call("memory/get", {"namespace": "shared", "key": "plan"})["result"]["found"] is False
        assert "result" in bob.call("memory/set", {"namespace": "shared", "key": "plan", "value": "globex's"})
        assert alice.call("memory/get", {"namespace": "shared", "key": "plan"})["result"]["value"] == "acme's"

        # Events: a pattern that would match everything matches the tenant's topics only.
        assert "result" in alice.call("events/subscribe", {"pattern": "*"})
        assert bob.call("events/publish", {"topic": "news", "data": {"from": "bob"}})["result"]["delivered"] == 0
        assert alice.call("events/publish", {"topic": "news", "data": {"from": "alice"}})["result"]["delivered"] == 1
        event = alice.wait_notification("notifications/events/message")
        assert event["params"]["topic"] == "news" and event["params"]["data"] == {"from": "alice"}, event


def test_a_tenants_agents_get_its_messages_and_another_tenants_do_not_exist_for_it(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    with signed_in(gw, "key-acme-bot") as acme_bot, signed_in(gw, "key-globex-bot") as globex_bot, \
            signed_in(gw, "key-alice") as alice, signed_in(gw, "key-bob") as bob, signed_in(gw, "key-root") as root:
        for bot, name in ((acme_bot, "acme-helper"), (globex_bot, "globex-helper")):
            assert "result" in bot.call("agents/register", {"agentName": name, "capabilities": ["helper"]})
        sent = alice.call("messages/send", {"targetAgentId": "acme-helper", "messageType": "notification", "messageData": {"n": 1}})
        assert sent["result"]["delivered"] == 1, sent
        assert acme_bot.wait_notification("notifications/messages/message")["params"]["messageData"] == {"n": 1}
        # Another tenant's agent is not found: exactly the answer for an agent that does not exist.
        hidden = bob.call("messages/send", {"targetAgentId": "acme-helper", "messageType": "notification", "messageData": {}})["error"]
        absent = bob.call("messages/send", {"targetAgentId": "nobody", "messageType": "notification", "messageData": {}})["error"]
        assert json.dumps(hidden).replace("acme-helper", "X") == json.dumps(absent).replace("nobody", "X"), (hidden, absent)
        # A broadcast to a capability reaches the sender's tenant's agents only.
        broadcast = bob.call("messages/send", {"capability": "helper", "messageType": "broadcast", "messageData": {"from": "bob"}})
        assert broadcast["result"]["delivered"] == 1, broadcast
        assert globex_bot.wait_notification("notifications/messages/message")["params"]["messageData"] == {"from": "bob"}
        assert not [n for n in acme_bot.notifications if n["params"].get("messageData") == {"from": "bob"}]
        # An admin works across tenants and reaches both.
        everyone = root.call("messages/send", {"capability": "helper", "messageType": "broadcast", "messageData": {}})
        assert everyone["result"]["delivered"] == 2, everyone
        assert sorted(a.get("tenants", [None])[0] for a in root.call("agents/list", {"capability": "helper"})["result"]["agents"]) == [
            "acme", "globex"]


def test_a_template_kept_to_a_tenant_and_a_tenants_attached_agent_do_not_exist_for_another(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys, agents={
        "acme-tools": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "acme_secret"], "tenants": ["acme"]}})])
    with signed_in(gw, "key-alice") as alice, signed_in(gw, "key-bob") as bob, signed_in(gw, "key-root") as root, \
            signed_in(gw, "key-acme-bot") as acme_bot:
        quote = {"name": "acme_quote", "inputSchema": {"type": "object"}}
        assert "result" in acme_bot.call("agents/register", {"agentName": "acme-helper", "tools": [quote]})

        def tools(session):
            return {tool["name"] for tool in session.call("tools/list")["result"]["tools"]}

        assert tools(alice) == {"echo", "acme_secret", "acme_quote"}
        assert tools(root) == {"echo", "acme_secret", "acme_quote"}
        assert tools(bob) == {"echo"}
        assert alice.call("tools/call", {"name": "acme_secret", "arguments": {"text": "x"}})["result"]["content"][0]["text"] == "server:x"
        # To globex they do not exist: the answers for a tool nobody offers.
        for name in ("acme_secret", "acme_quote"):
            hidden = bob.call("tools/call", {"name": name, "arguments": {}})["error"]
            absent = bob.call("tools/call", {"name": "nothing_here", "arguments": {}})["error"]
            assert json.dumps(hidden).replace(name, "X") == json.dumps(absent).replace("nothing_here", "X"), (hidden, absent)
            refused = bob.call("tasks/submit", {"taskType": name, "taskData": {}})["error"]
            assert refused["code"] == -32602 and f'unknown tool "{name}"' in refused["message"], refused
        listed = {a["agentName"] for a in bob.call("agents/list")["result"]["agents"]}
        assert "acme-helper" not in listed and not any(n.startswith("acme-tools") for n in listed), listed
        assert "echo#1" in listed or any(n.startswith("echo") for n in listed), listed
        for agent_id in ("acme-tools#1", next(a["agentId"] for a in alice.call("agents/list")["result"]["agents"] if a["agentName"] == "acme-helper")):
            assert bob.call("agents/get", {"agentId": agent_id})["error"]["message"] == f'Invalid params: no agent "{agent_id}"'
            assert alice.call("agents/get", {"agentId": agent_id})["result"]["tenants"] == ["acme"]


def test_two_tenants_agents_of_one_name_each_serve_only_their_tenants_calls(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    with signed_in(gw, "key-acme-bot") as acme_bot, signed_in(gw, "key-globex-bot") as globex_bot, \
            signed_in(gw, "key-alice") as alice, signed_in(gw, "key-bob") as bob:
        work = {"name": "work", "inputSchema": {"type": "object"}}
        ids = {bot: bot.call("agents/register", {"agentName": "worker", "tools": [work]})["result"]["agentId"]
               for bot in (acme_bot, globex_bot)}
        # The bots answer every call with an error: what counts is which one was called.
        for _ in range(6):
            assert "error" in alice.call("tools/call", {"name": "work", "arguments": {}})
        for _ in range(4):
            assert "error" in bob.call("tools/call", {"name": "work", "arguments": {}})

        def calls(session, agent_id):
            metrics = session.call("agents/get", {"agentId": agent_id})["result"]["performanceMetrics"]
            return metrics["tasksCompleted"] + metrics["tasksFailed"]

        assert calls(alice, ids[acme_bot]) == 6
        assert calls(bob, ids[globex_bot]) == 4


def test_held_lines_are_answered_when_the_peer_closes_its_side_at_once(start_gateway, tmp_path, signing_keys):
    """Lines held while a token is verified are still answered when the peer has already closed
    its side of the connection (a script piping requests in, then EOF)."""
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    sock = gw.tcp.connect()
    sock.sendall(jline(req("tools/list", 1, modern("key-alice"))) + jline(req("auth/whoami", 2, modern("key-alice")))
                 + jline(req("auth/whoami", 3, modern())))
    sock.shutdown(socket.SHUT_WR)
    received = b""
    sock.settimeout(10)
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    replies = {r["id"]: r for r in map(json.loads, received.splitlines())}
    assert sorted(replies) == [1, 2, 3], received
    assert replies[2]["result"]["principal"] == "alice" and replies[3]["result"]["principal"] == "anonymous"


MODERN = "2026-07-28"


def modern(token: str | None = None, **params) -> dict:
    """A 2026-07-28-era request's params: its version, and its token when it carries one."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN}
    if token is not None:
        meta["io.switchboard/token"] = token
    return {**params, "_meta": meta}


def test_a_modern_request_carries_its_own_token_and_is_decided_as_its_principal(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    with RpcSession.connect(gw.tcp) as session:
        # No handshake: each request says who it is, or is anonymous (here: nothing allowed).
        assert session.call("tools/list", modern())["error"]["code"] == FORBIDDEN
        assert {tool["name"] for tool in session.call("tools/list", modern("key-alice"))["result"]["tools"]} == {"echo"}
        assert session.call("auth/whoami", modern("key-alice"))["result"]["principal"] == "alice"
        # The connection itself stays anonymous: a request without a token is not alice's.
        assert session.call("auth/whoami", modern())["result"]["principal"] == "anonymous"
        # A JWT works the same way.
        carol = token(signing_keys["rsa"], "rsa-1", "RS256")
        who = session.call("auth/whoami", modern(carol))["result"]
        assert (who["principal"], who["tenant"], who["proof"]) == ("carol", "initech", "jwt"), who
        # A token that does not verify refuses its request, and never comes back in the reply.
        bad = session.call("tools/list", modern("key-mallory"))
        assert bad["error"]["code"] == UNAUTHENTICATED and "key-mallory" not in json.dumps(bad), bad
        expired = token(signing_keys["rsa"], "rsa-1", "RS256", exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
        assert session.call("auth/whoami", modern(expired))["error"]["code"] == UNAUTHENTICATED
        # Tenancy follows each request's principal, even pipelined behind one another.
        ids = [session.next_id() for _ in range(3)]
        session.sock.sendall(
            jline(req("memory/set", ids[0], modern("key-alice", namespace="shared", key="plan", value="acme's")))
            + jline(req("memory/get", ids[1], modern("key-bob", namespace="shared", key="plan")))
            + jline(req("memory/get", ids[2], modern("key-alice", namespace="shared", key="plan"))))
        replies = [session.reply(id_) for id_ in ids]
        assert "result" in replies[0], replies
        assert replies[1]["result"]["found"] is False, replies
        assert replies[2]["result"]["value"] == "acme's", replies
    # In a handshake-era session the key means nothing: auth/authenticate is how it proves itself.
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        assert session.call("auth/whoami", {"_meta": {"io.switchboard/token": "key-alice"}})["result"]["principal"] == "anonymous"


def test_the_audit_trail_records_who_did_what_and_verify_catches_a_one_byte_change(start_gateway, tmp_path, signing_keys):
    audit_file = tmp_path / "audit.jsonl"
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys, audit={"file": str(audit_file)})])
    with signed_in(gw, "key-alice") as alice:
        assert "result" in alice.call("memory/set", {"key": "k", "value": 1})
        assert alice.call("agents/drain", {"agentId": "echo"})["error"]["code"] == FORBIDDEN
    with signed_in(gw, "key-root") as root:
        page = root.call("audit/query", {"order": "oldest"})["result"]
    entries = [(e["principal"], e["method"], e["outcome"]) for e in page["entries"]]
    assert ("alice", "auth/authenticate", "ok") in entries
    assert ("alice", "memory/set", "ok") in entries
    assert ("alice", "agents/drain", "refused") in entries
    drain = next(e for e in page["entries"] if e["method"] == "agents/drain")
    assert drain["target"] == "echo" and drain["tenant"] == "acme" and drain["error"]["code"] == FORBIDDEN

    verify = [str(switchboard_bin()), "audit", "verify", str(audit_file)]
    ok = subprocess.run(verify, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok
    lines = audit_file.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"alice"', b'"alicf"', 1)
    audit_file.write_bytes(b"\n".join(lines))
    changed = subprocess.run(verify, capture_output=True, text=True, timeout=30)
    assert changed.returncode == 1 and "line 2: changed" in changed.stdout, changed


def test_requests_pipelined_behind_the_token_are_decided_as_the_principal_it_proves(start_gateway, tmp_path, signing_keys):
    """A client writes its token and its first requests in one go, without waiting: they are
    decided as the authenticated principal, and answered after the authentication."""
    from sbwire import LineClient, jline, req

    for credential in ("key-alice", token(signing_keys["rsa"], "rsa-1", "RS256")):
        gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys, audit={"file": str(tmp_path / "a.jsonl")})])
        with LineClient.connect(gw.tcp) as client:
            client.send_raw(b"".join([
                jline(req("auth/authenticate", 1, {"token": credential})),
                jline(req("tools/list", 2)),
                jline(req("memory/set", 3, {"key": "k", "value": 1})),
                jline(req("auth/whoami", 4)),
            ]))
            replies = [client.recv() for _ in range(4)]
        # The authentication is answered first; the others after it (in any order, as JSON-RPC
        # allows: tools/list may wait for agents still starting).
        assert replies[0]["id"] == 1 and sorted(reply["id"] for reply in replies) == [1, 2, 3, 4], replies
        assert all("result" in reply for reply in replies), replies
        assert next(r for r in replies if r["id"] == 4)["result"]["authenticated"] is True
        gw.stop()


APPROVAL = """workflowName: tenant-flow
version: "1"
steps:
  - id: sign_off
    type: human_approval
    message: "Proceed?"
    approvers: [alice]
    timeout: 1h
"""


def test_a_tenants_workflow_execution_is_not_found_by_another_tenant_and_seen_by_operators(start_gateway, tmp_path, signing_keys):
    gw = start_gateway("tcp", extra=["--config", gateway_config(tmp_path, signing_keys)])
    with signed_in(gw, "key-alice") as alice, signed_in(gw, "key-bob") as bob, signed_in(gw, "key-ops") as ops:
        assert "result" in alice.call("workflows/create", {"source": APPROVAL})
        execution = alice.call("workflows/execute", {"workflowName": "tenant-flow", "executionContext": {"tenant": "globex"}})["result"]
        execution_id = execution["executionId"]
        assert execution["executionContext"]["tenant"] == "acme", execution
        for method, params in [("workflows/status", {}), ("workflows/cancel", {}),
                               ("workflows/approve", {"stepId": "sign_off", "approved": True})]:
            reply = bob.call(method, {"executionId": execution_id, **params})
            assert reply["error"]["code"] == -32002 and "no workflow execution" in reply["error"]["message"], (method, reply)
        assert ops.call("workflows/status", {"executionId": execution_id})["result"]["executionId"] == execution_id
        assert alice.call("workflows/status", {"executionId": execution_id})["result"]["status"] in ("RUNNING", "WAITING_APPROVAL")
