"""Who may do what (protocol-spec chapter 12): the decision made before any handler runs, the
anonymous role, lists that show a principal only what it may use, refusals that name what was
refused and why, the operator on stdio.
"""

from __future__ import annotations

import json
import subprocess
import sys

from sbwire import REPO, LineClient, RpcSession, jline, req, switchboard_bin

TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "stdio_tool_server.py"
FORBIDDEN = -32005


def config(tmp_path, auth: dict, **extra) -> str:
    path = tmp_path / "gateway.json"
    servers = {
        "trading": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "buy", "--tool", "wire"], "toolPrefix": "trading__"},
        "pricing": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "quote"], "toolPrefix": "pricing__"},
    }
    path.write_text(json.dumps({"auth": auth, "mcpServers": servers, **extra}))
    return str(path)


def tool_names(session: RpcSession) -> set[str]:
    reply = session.call("tools/list")
    assert "result" in reply, reply
    return {tool["name"] for tool in reply["result"]["tools"]}


def test_without_credentials_a_peer_may_do_nothing_but_authenticate(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", config(tmp_path, {"anonymous": "none"})])
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        assert session.call("ping")["result"] == {}
        reply = session.call("tools/list")
        assert reply["error"]["code"] == FORBIDDEN, reply
        assert reply["error"]["data"] == {"principal": "anonymous", "refused": "tools/list", "reason": "authenticate first (auth/authenticate)"}
        for method, params in [
            ("agents/scale", {"template": "trading", "instances": 40}),
            ("agents/drain", {"agentId": "trading"}),
            ("workflows/approve", {"executionId": "x", "stepId": "y", "approved": True, "by": "cfo"}),
            ("memory/set", {"key": "k", "value": 1}),
            ("tasks/submit", {"tool": "trading__buy", "arguments": {}}),
        ]:
            reply = session.call(method, params)
            assert reply["error"]["code"] == FORBIDDEN, (method, reply)
        whoami = session.call("auth/whoami")["result"]
        assert whoami["principal"] == "anonymous" and whoami["authenticated"] is False and whoami["accessControl"] is True


def test_a_custom_role_sees_and_calls_only_its_tools_and_a_deny_wins(start_gateway, tmp_path):
    auth = {
        "anonymous": "trader",
        "roles": {"trader": {"allow": ["tools/*:trading__*", "tools/list"], "deny": ["tools/call:trading__wire"]}},
    }
    gw = start_gateway("tcp", extra=["--config", config(tmp_path, auth)])
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        # Listed once, right after connecting, as hosts do: only what the role may call.
        assert tool_names(session) == {"trading__buy"}
        ok = session.call("tools/call", {"name": "trading__buy", "arguments": {"text": "1"}})
        assert ok["result"]["content"][0]["text"].endswith(":1"), ok
        denied = session.call("tools/call", {"name": "trading__wire", "arguments": {}})
        assert denied["error"]["code"] == FORBIDDEN
        assert denied["error"]["data"]["reason"] == "role trader denies tools/call:trading__wire"
        other = session.call("tools/call", {"name": "pricing__quote", "arguments": {}})
        assert other["error"]["code"] == FORBIDDEN
        assert other["error"]["data"]["refused"] == "tools/call pricing__quote"
        assert "no rule of role trader allows it" in other["error"]["message"]


def test_a_viewer_reads_but_changes_nothing(start_gateway, tmp_path):
    gw = start_gateway("tcp", extra=["--config", config(tmp_path, {"anonymous": "viewer"})])
    with LineClient.connect(gw.tcp) as client:
        assert "result" in client.call("gateway/status")
        assert "result" in client.call("agents/list")
        for method, params in [("tools/call", {"name": "trading__buy"}), ("agents/scale", {"template": "trading", "instances": 2}),
                               ("memory/set", {"key": "k", "value": 1})]:
            reply = client.call(method, params)
            assert reply["error"]["code"] == FORBIDDEN, (method, reply)


def test_the_operator_on_stdio_may_do_everything(tmp_path):
    path = config(tmp_path, {"anonymous": "none"})
    lines = [
        jline(req("auth/whoami", 1)),
        jline(req("agents/scale", 2, {"template": "pricing", "instances": 2})),
    ]
    proc = subprocess.run(
        [str(switchboard_bin()), "serve", "--stdio", "--config", path], input=b"".join(lines), capture_output=True, timeout=60)
    replies = {reply["id"]: reply for reply in map(json.loads, proc.stdout.decode().splitlines())}
    assert replies[1]["result"]["principal"] == "operator" and replies[1]["result"]["proof"] == "operator", replies
    assert replies[2]["result"]["instances"] == 2, replies


def test_a_mistake_in_the_auth_section_refuses_the_start(tmp_path):
    path = config(tmp_path, {"anonymous": "nobody"})
    proc = subprocess.run([str(switchboard_bin()), "config", "check", path], capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert "auth.anonymous" in proc.stdout.decode() + proc.stderr.decode()


# --------------------------------------------------------------------------- agent admission


def test_a_peer_cannot_take_over_an_agent_by_registering_its_name_with_a_higher_version(start_gateway, tmp_path):
    """The call-hijacking attack: an anonymous peer (even one whose role may register agents)
    registers as "pricing" version 99; it is refused, and the real agent keeps its calls."""
    gw = start_gateway("tcp", extra=["--config", config(tmp_path, {"anonymous": "agent"})])
    with RpcSession.connect(gw.tcp) as attacker:
        attacker.initialize()
        reply = attacker.call("agents/register", {
            "agentName": "pricing", "version": "99",
            "tools": [{"name": "quote", "inputSchema": {"type": "object"}}],
        })
        assert reply["error"]["code"] == FORBIDDEN, reply
        assert reply["error"]["data"]["refused"] == "agents/register pricing"
        assert "none" in reply["error"]["data"]["reason"]
    with RpcSession.connect(gw.tcp) as client:
        client.initialize()
        for n in range(10):
            result = client.call("tools/call", {"name": "pricing__quote", "arguments": {"text": str(n)}})
            assert result["result"]["content"][0]["text"] == f"server:{n}", result


# --------------------------------------------------------------------------- approvals


APPROVAL = """workflowName: {name}
version: "1"
steps:
  - id: sign_off
    type: human_approval
    message: "Proceed?"
    approvers: [{approvers}]
    timeout: 1h
"""


def waiting_execution(session: RpcSession, name: str, approvers: str) -> str:
    created = session.call("workflows/create", {"source": APPROVAL.format(name=name, approvers=approvers)})
    assert "result" in created, created
    execution = session.call("workflows/execute", {"workflowName": name})["result"]["executionId"]
    for _ in range(200):
        status = session.call("workflows/status", {"executionId": execution})["result"]["status"]
        if status == "WAITING_APPROVAL":
            return execution
        import time
        time.sleep(0.02)
    raise AssertionError("the execution never waited for approval")


def test_an_approval_is_decided_by_the_authenticated_principal_not_by_what_by_says(start_gateway, tmp_path):
    auth = {"anonymous": "approver", "roles": {"approver": {"allow": ["workflows/*"]}}}
    gw = start_gateway("tcp", extra=["--config", config(tmp_path, auth)])
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        execution = waiting_execution(session, "access-approval-cfo", "cfo")
        spoofed = session.call("workflows/approve", {"executionId": execution, "stepId": "sign_off", "approved": True, "by": "cfo"})
        assert spoofed["error"]["code"] == FORBIDDEN, spoofed
        assert "the approver is the authenticated principal" in spoofed["error"]["message"]
        as_itself = session.call("workflows/approve", {"executionId": execution, "stepId": "sign_off", "approved": True})
        assert "anonymous may not decide step sign_off" in as_itself["error"]["message"], as_itself
        assert session.call("workflows/status", {"executionId": execution})["result"]["status"] == "WAITING_APPROVAL"

        # Approvers named by role: a principal holding the role decides, and is recorded.
        by_role = waiting_execution(session, "access-approval-role", "\"role:approver\"")
        decided = session.call("workflows/approve", {"executionId": by_role, "stepId": "sign_off", "approved": True})
        assert "result" in decided, decided
        assert decided["result"]["stepResults"]["sign_off"]["approval"]["decidedBy"] == "anonymous"


# --------------------------------------------------------------------------- the example


def test_the_example_access_configuration_works_as_its_comments_say(start_gateway, tmp_path):
    import shutil

    for name in ("access.yaml", "jwks.json"):
        shutil.copy(REPO / "examples" / "configs" / name, tmp_path / name)
    gw = start_gateway("tcp", extra=["--config", str(tmp_path / "access.yaml")])
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        assert session.call("tools/list")["error"]["code"] == FORBIDDEN
        me = session.call("auth/authenticate", {"token": "example-key-alice"})["result"]
        assert (me["principal"], me["roles"], me["tenant"]) == ("alice", ["trader"], "acme")
        assert "result" in session.call("tools/list")
        assert session.call("agents/scale", {"template": "x", "instances": 2})["error"]["code"] == FORBIDDEN
    with RpcSession.connect(gw.tcp) as bot:
        bot.initialize()
        assert "result" in bot.call("auth/authenticate", {"token": "example-key-pricing"})
        assert "result" in bot.call("agents/register", {"agentName": "pricing", "tools": []})
    with RpcSession.connect(gw.tcp) as other:
        other.initialize()
        assert "result" in other.call("auth/authenticate", {"token": "example-key-bob"})
        assert other.call("agents/register", {"agentName": "pricing", "version": "9", "tools": []})["error"]["code"] == FORBIDDEN
    # The trail is beside the configuration, and verifies.
    verify = subprocess.run([str(switchboard_bin()), "audit", "verify", str(tmp_path / "audit.jsonl")], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout.startswith("ok: "), verify


# --------------------------------------------------------------------------- instance caps


def test_scaling_is_bounded_by_the_template_and_by_the_gateway_even_for_the_operator(tmp_path):
    """The control-plane attack asked for 1,000 instances and got 40 processes in half a second:
    a template has maxInstances (16 by default) and the gateway a cap on spawned instances in all."""
    path = tmp_path / "gateway.json"
    servers = {
        "small": {"command": sys.executable, "args": [str(TOOL_SERVER)], "maxInstances": 2},
        "other": {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "other"]},
    }
    path.write_text(json.dumps({"limits": {"maxSpawnedInstances": 3}, "mcpServers": servers}))
    lines = [
        jline(req("agents/scale", 1, {"template": "small", "instances": 3})),
        jline(req("agents/scale", 2, {"template": "other", "instances": 17})),
        jline(req("agents/scale", 3, {"template": "other", "instances": 3})),
        jline(req("agents/scale", 4, {"template": "small", "instances": 2})),
    ]
    proc = subprocess.run([str(switchboard_bin()), "serve", "--stdio", "--config", str(path)],
                          input=b"".join(lines), capture_output=True, timeout=60)
    replies = {reply["id"]: reply for reply in map(json.loads, proc.stdout.decode().splitlines())}
    assert "at most 2 instances (maxInstances)" in replies[1]["error"]["message"], replies[1]
    assert "at most 16 instances (maxInstances)" in replies[2]["error"]["message"], replies[2]
    # 2 running (one of each); 2 more for "other" would make 4 > 3.
    assert "limits.maxSpawnedInstances" in replies[3]["error"]["message"], replies[3]
    assert replies[4]["result"]["instances"] == 2, replies[4]
