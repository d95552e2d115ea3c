"""Replicas sharing one real redis-server act as one gateway (chapter 12 of the specification).

Each test starts its own `redis-server` on a free loopback port (append-only file on, in a
temporary directory) and several `switchboard serve --redis URL` processes. Agents are
`agents/task_agent.py` processes attached to one replica or another; clients are raw JSON-RPC
over TCP.

What is checked:
- a `tools/call` made at replica A for a tool that only an agent attached to replica B serves
  completes through B; `agents/list` shows the agent with its replica; `gateway/status` lists
  the live replicas; events published at A reach subscribers at B; memory written at A is read
  at B;
- tasks submitted at any replica run on whichever replica's agent is free, and `tasks/get` and
  `tasks/result` answer at every replica; many concurrent submitters lose nothing;
- a replica killed with SIGKILL while its agents run tasks: its leases lapse and the other
  replicas run those tasks again, the lost attempt counted; no accepted task is lost;
- rediss:// to redis-server's own TLS listener, verified against --redis-ca (and refused with
  another CA);
- Redis stopped: calls that need it fail fast with -32016; Redis started again (same data
  directory): the replicas carry on, and the tasks accepted before are still there.

Waiting: what the replicas learn from each other arrives with their heartbeat (every second);
such states are polled with a bounded loop, never slept on blindly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sbwire import REPLY_TIMEOUT, LoggedProcess, RpcSession

TASK_AGENT = Path(__file__).resolve().parent / "agents" / "task_agent.py"


# --------------------------------------------------------------------------- fixtures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sb-redis-")
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/setup.sh --test installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--appendonly", "yes",
             "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, f"redis-server exited: {self.proc.stdout.read().decode(errors='replace')}"
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING within 20 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis():
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def replicas(start_gateway, redis):
    """Factory: replicas("r1", "r2", ...) -> gateways sharing `redis`, by name."""

    def start(*names: str, lease: float = 2) -> dict:
        gateways = {}
        for name in names:
            gateways[name] = start_gateway(
                "tcp", extra=["--redis", redis.url, "--replica-id", name, "--task-lease", str(lease)])
        return gateways

    return start


@pytest.fixture
def agent():
    started = []

    def start(gateway, name: str, *tools: str, label: str, delay: float = 0.0, max_concurrency: int = 16):
        url = f"tcp://{gateway.tcp.address[0]}:{gateway.tcp.address[1]}"
        args = [sys.executable, TASK_AGENT, url, "--name", name, "--label", label, "--delay", delay,
                "--max-concurrency", max_concurrency]
        for tool in tools:
            args += ["--tool", tool]
        proc = LoggedProcess(args)
        started.append(proc)
        proc.wait_line(r"registered as (\S+)")
        return proc

    yield start
    for proc in started:
        proc.kill()


def session(gateway) -> RpcSession:
    return RpcSession.connect(gateway.tcp)


def until(predicate, what: str, timeout: float = 15.0):
    """Polls a state that nothing announces (what replicas learn on their heartbeat)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def tool_names(rpc: RpcSession) -> set:
    return {tool["name"] for tool in rpc.result("tools/list")["tools"]}


def text_of(result: dict) -> str:
    return result["content"][0]["text"]


# --------------------------------------------------------------------------- one gateway


def test_a_call_at_one_replica_runs_on_an_agent_attached_to_another(replicas, agent):
    gateways = replicas("r1", "r2", "r3")
    agent(gateways["r2"], "weather", "forecast", label="at-r2")
    with session(gateways["r1"]) as rpc:
        until(lambda: "forecast" in tool_names(rpc), "r1 to learn r2's tool")
        result = rpc.result("tools/call", {"name": "forecast", "arguments": {"text": "rain"}})
        assert text_of(result) == "at-r2:rain"
        listed = [a for a in rpc.result("agents/list")["agents"] if a["agentName"] == "weather"]
        assert len(listed) == 1 and listed[0]["replica"] == "r2"
        status = rpc.result("gateway/status")
        assert status["backend"] == "redis"
        until(lambda: {r["replicaId"] for r in rpc.result("gateway/status")["replicas"]} == {"r1", "r2", "r3"},
              "gateway/status to list the three replicas")


def test_an_unknown_tool_is_still_an_error_with_replicas(replicas):
    gateways = replicas("r1", "r2")
    with session(gateways["r1"]) as rpc:
        reply = rpc.call("tools/call", {"name": "nobody-has-this", "arguments": {}})
        assert reply["error"]["code"] == -32602


def test_events_published_at_one_replica_reach_subscribers_at_another(replicas):
    gateways = replicas("r1", "r2")
    with session(gateways["r2"]) as subscriber, session(gateways["r1"]) as publisher:
        subscriber.result("events/subscribe", {"topic": "prices.eurusd"})
        publisher.result("events/publish", {"topic": "prices.eurusd", "data": {"bid": 1.0841}})
        note = subscriber.wait_notification("notifications/events/message")
        assert note["params"]["topic"] == "prices.eurusd"
        assert note["params"]["data"] == {"bid": 1.0841}


def test_memory_written_at_one_replica_is_read_at_another(replicas):
    gateways = replicas("r1", "r2")
    with session(gateways["r1"]) as a, session(gateways["r2"]) as b:
        written = a.result("memory/set", {"namespace": "desk", "key": "limit", "value": {"usd": 5_000_000}})
        read = b.result("memory/get", {"namespace": "desk", "key": "limit"})
        assert read["value"] == {"usd": 5_000_000}
        assert read["version"] == written["version"]


# --------------------------------------------------------------------------- tasks


def test_tasks_submitted_anywhere_run_and_answer_everywhere(replicas, agent):
    gateways = replicas("r1", "r2", "r3")
    agent(gateways["r2"], "worker", "crunch", label="w2", max_concurrency=8)
    agent(gateways["r3"], "worker", "crunch", label="w3", max_concurrency=8)
    names = ["r1", "r2", "r3"]
    sessions = {name: session(gateways[name]) for name in names}
    try:
        until(lambda: "crunch" in tool_names(sessions["r1"]), "r1 to learn the tool")
        submitted = {}
        errors = []

        def submitter(index: int):
            rpc = sessions[names[index % 3]]
            for n in range(index * 100, index * 100 + 100):
                try:
                    task = rpc.result("tasks/submit", {"taskType": "crunch", "taskData": {"n": n, "text": str(n)}})
                    submitted[task["taskId"]] = n
                except Exception as error:  # noqa: BLE001 - collected and asserted below
                    errors.append(repr(error))

        threads = [threading.Thread(target=submitter, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(submitted) == 600, "every submission got its own task"
        ran_on = set()
        for position, (task_id, n) in enumerate(submitted.items()):
            reader = sessions[names[(position + 1) % 3]]
            result = reader.result("tasks/result", {"taskId": task_id}, timeout=60)
            assert result["structuredContent"]["n"] == n
            ran_on.add(result["structuredContent"]["agent"])
            status = sessions[names[(position + 2) % 3]].result("tasks/get", {"taskId": task_id})
            assert status["state"] == "COMPLETED"
        assert ran_on == {"w2", "w3"}, "both replicas' agents took work"
    finally:
        for rpc in sessions.values():
            rpc.close()


def test_a_replica_killed_mid_task_loses_no_task(replicas, agent):
    gateways = replicas("r1", "r2", "r3", lease=2)
    agent(gateways["r2"], "slow", "grind", label="s2", max_concurrency=10)
    agent(gateways["r3"], "slow", "grind", label="s3", max_concurrency=10)
    with session(gateways["r1"]) as rpc:
        until(lambda: len([a for a in rpc.result("agents/list")["agents"] if a["agentName"] == "slow"]) == 2,
              "r1 to see both agents")
        ids = [rpc.result("tasks/submit", {"taskType": "grind", "taskData": {"n": n, "sleep": 1.5}, "maxRetries": 3})["taskId"]
               for n in range(30)]
        # Some tasks are running on r2's agent before it dies.
        until(lambda: any(rpc.result("tasks/get", {"taskId": t}).get("assignedAgent", {}).get("replica") == "r2"
                          for t in ids), "a task to be running on r2's agent")
        gateways["r2"].kill()
        for n, task_id in enumerate(ids):
            result = rpc.result("tasks/result", {"taskId": task_id}, timeout=90)
            assert result["structuredContent"]["n"] == n
        retried = [rpc.result("tasks/get", {"taskId": t}) for t in ids]
        lapsed = [t for t in retried if any("lease of r2 lapsed" in (a.get("error") or "") for a in t["attempts"])]
        assert lapsed, "at least one task ran again after r2's lease lapsed"
        assert all(t["retryCount"] >= 1 for t in lapsed), "the lost attempt is counted"
        assert all(t["state"] == "COMPLETED" for t in retried)
        until(lambda: {r["replicaId"] for r in rpc.result("gateway/status")["replicas"]} == {"r1", "r3"},
              "r2 to leave gateway/status")


def test_redis_restart_fails_fast_then_carries_on_with_nothing_lost(replicas, agent, redis):
    gateways = replicas("r1", "r2")
    agent(gateways["r2"], "keeper", "keep", label="k2")
    with session(gateways["r1"]) as rpc, session(gateways["r2"]) as home:
        until(lambda: "keep" in tool_names(rpc), "r1 to learn the tool")
        # The agent is in maintenance: what is submitted now stays queued across the restart.
        home.result("agents/setState", {"agentId": "keeper", "state": "MAINTENANCE"})
        queued = [rpc.result("tasks/submit", {"taskType": "keep", "taskData": {"n": n}})["taskId"] for n in range(20)]
        assert all(rpc.result("tasks/get", {"taskId": t})["state"] == "PENDING" for t in queued)

        redis.stop()
        started = time.monotonic()
        reply = rpc.call("memory/get", {"namespace": "desk", "key": "x"}, timeout=30)
        assert reply["error"]["code"] == -32016, reply
        reply = rpc.call("tasks/get", {"taskId": queued[0]}, timeout=30)
        assert reply["error"]["code"] == -32016, reply
        assert time.monotonic() - started < 20, "calls that need Redis fail fast while it is down"

        redis.start()
        until(lambda: "result" in rpc.call("memory/get", {"namespace": "desk", "key": "x"}, timeout=30),
              "memory/get to work again", timeout=30)
        assert all(rpc.result("tasks/get", {"taskId": t})["state"] == "PENDING" for t in queued), "accepted tasks survived"
        home.result("agents/setState", {"agentId": "keeper", "state": "IDLE"})
        for n, task_id in enumerate(queued):
            assert rpc.result("tasks/result", {"taskId": task_id}, timeout=60)["structuredContent"]["n"] == n


# --------------------------------------------------------------------------- rediss://


def test_rediss_verifies_the_server_and_carries_the_shared_state(start_gateway, tmp_path):
    """redis-server's own TLS listener, a certificate made here by openssl: the replica connects
    with rediss:// and --redis-ca; with a CA that did not sign the server's certificate it refuses
    the server, and calls that need Redis get -32016."""
    def make_ca(name: str):
        key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
        return key, cert

    ca_key, ca = make_ca("test-ca")
    _, other_ca = make_ca("other-ca")
    server_key, csr, server_cert = tmp_path / "server.key", tmp_path / "server.csr", tmp_path / "server.pem"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", server_key, "-out", csr,
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    extensions = tmp_path / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", server_cert,
                    "-days", "2", "-extfile", extensions], check=True, capture_output=True)

    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(server_cert), "--tls-key-file", str(server_key), "--tls-auth-clients", "no",
         "--save", "", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: subprocess.run(["redis-cli", "-p", str(port), "--tls", "--cacert", str(ca), "ping"],
                                     capture_output=True, text=True).stdout.strip() == "PONG", "redis-server's TLS port")
        url = f"rediss://127.0.0.1:{port}/0"
        trusted = start_gateway("tcp", extra=["--redis", url, "--redis-ca", str(ca), "--replica-id", "tls1"])
        with session(trusted) as rpc:
            rpc.result("memory/set", {"namespace": "desk", "key": "k", "value": "over TLS"})
            assert rpc.result("memory/get", {"namespace": "desk", "key": "k"})["value"] == "over TLS"
        stored = subprocess.run(["redis-cli", "-p", str(port), "--tls", "--cacert", str(ca), "exists", "switchboard:kv:4:{desk}:k"],
                                capture_output=True, text=True).stdout.strip()
        assert stored == "1", "the value is in the TLS server's keyspace"
        untrusting = start_gateway("tcp", extra=["--redis", url, "--redis-ca", str(other_ca), "--replica-id", "tls2"])
        with session(untrusting) as rpc:
            reply = rpc.call("memory/get", {"namespace": "desk", "key": "k"}, timeout=30)
            assert reply["error"]["code"] == -32016, reply
    finally:
        redis.kill()
        redis.wait()


def test_both_replicas_audit_trails_meet_in_one_redis_stream(start_gateway, redis, tmp_path):
    """Each replica keeps its own hash-chained file, and appends every entry to one shared Redis
    stream (protocol-spec 12.9), where the last hash of each file is kept outside it."""
    gateways = {}
    for name in ("r1", "r2"):
        config = tmp_path / f"{name}.json"
        config.write_text(json.dumps({"audit": {"file": str(tmp_path / f"{name}-audit.jsonl")}}))
        gateways[name] = start_gateway("tcp", extra=["--redis", redis.url, "--replica-id", name, "--config", str(config)])
    for name, gateway in gateways.items():
        with session(gateway) as rpc:
            assert "result" in rpc.call("memory/set", {"key": f"from-{name}", "value": 1})

    def stream() -> list[dict]:
        out = subprocess.run(["redis-cli", "-p", str(redis.port), "--raw", "XRANGE", "switchboard:audit", "-", "+"],
                             capture_output=True, text=True, timeout=10).stdout.splitlines()
        return [json.loads(line) for line in out if line.startswith("{")]

    entries = until(lambda: (found := stream()) and len({e["replica"] for e in found if e["method"] == "memory/set"}) == 2 and found,
                    "both replicas' entries in the stream")
    by_replica = {e["replica"]: e for e in entries if e["method"] == "memory/set"}
    assert by_replica["r1"]["target"] == "from-r1" and by_replica["r2"]["target"] == "from-r2"
    # The stream holds each file's entries as written: the same hash chain.
    for name in ("r1", "r2"):
        lines = [json.loads(line) for line in (tmp_path / f"{name}-audit.jsonl").read_text().splitlines()]
        assert lines[-1]["hash"] in {e["hash"] for e in entries}, name


def test_an_http_session_opened_at_one_replica_is_served_by_another(start_gateway, redis):
    """Replicas sharing Redis share the key that signs MCP session ids: a client whose next
    request reaches another replica (a load balancer's choice) keeps its session."""
    import httpx

    gateways = [
        start_gateway("http", "tcp", extra=["--redis", redis.url, "--replica-id", name]) for name in ("h1", "h2")
    ]
    bases = [gw.endpoint("http").url for gw in gateways]
    accept = {"accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=20) as client:
        opened = client.post(f"{bases[0]}/mcp", headers=accept, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "lb", "version": "1"}}})
        assert opened.status_code == 200, opened.text
        session = {**accept, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        assert client.post(f"{bases[0]}/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
        elsewhere = client.post(f"{bases[1]}/mcp", headers=session, json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert elsewhere.status_code == 200 and elsewhere.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
        # Memory written through the session at one replica is read through it at the other.
        wrote = client.post(f"{bases[1]}/mcp", headers=session, json={"jsonrpc": "2.0", "id": 3, "method": "memory/set", "params": {"key": "lb", "value": 7}})
        assert "result" in wrote.json(), wrote.text
        read = client.post(f"{bases[0]}/mcp", headers=session, json={"jsonrpc": "2.0", "id": 4, "method": "memory/get", "params": {"key": "lb"}})
        assert read.json()["result"]["value"] == 7
