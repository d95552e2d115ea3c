"""Peers that do not read: the output the gateway queues for them is bounded in bytes and in
time, per connection and in all; past a bound the connection is closed with a logged reason and
its work at agents is cancelled; memory comes back after they leave; everyone else is served.
"""

from __future__ import annotations

import json
import re
import socket
import time

from sbwire import LineClient, jline, req

MiB = 1024 * 1024


def big_value(client: LineClient, size: int = MiB) -> None:
    """A memory key whose every read is a large reply."""
    reply = client.call("memory/set", {"key": "big", "value": "x" * size})
    assert "result" in reply, reply


def non_reader(endpoint, requests: int) -> socket.socket:
    """A connection that asks for many large replies and reads none of them."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(endpoint.address)
    sock.setblocking(False)
    line = jline(req("memory/get", 1, {"key": "big"}))
    for _ in range(requests):
        try:
            sock.send(line)
        except BlockingIOError:
            break
    return sock


def next_from_gateway(agent: LineClient) -> dict:
    """The next message the gateway sends the agent, its health pings answered on the way."""
    while True:
        message = agent.recv()
        if message.get("method") != "ping":
            return message
        agent.send({"jsonrpc": "2.0", "id": message["id"], "result": {}})


def wait_until(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def test_eight_clients_that_never_read_stay_within_the_bound_and_memory_comes_back(start_gateway, tmp_path):
    # A peer whose replies stay under the byte bound is closed when it has stalled this long.
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"limits": {"outputStallSeconds": 2}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with LineClient.connect(gateway.tcp) as bystander:
        big_value(bystander)
        baseline = gateway.rss_bytes()
        peers = [non_reader(gateway.tcp, 400) for _ in range(8)]
        peak = 0

        def all_closed() -> bool:
            nonlocal peak
            peak = max(peak, gateway.rss_bytes())
            closed = [line for line in gateway.stderr_lines if re.search(r"closing the connection: .*(does not read|do not read|taken none)", line)]
            return len(closed) >= 8

        wait_until(all_closed, "the eight connections to be closed for their output")
        bystander.ping_ok()
        # Each asked for 400 MiB of replies; the gateway held at most its bounds for all of them.
        assert peak < 256 * MiB, f"resident memory reached {peak / MiB:.0f} MiB"
        for peer in peers:
            peer.close()
        bystander.ping_ok()
        # Memory comes back near the baseline once they are gone (within 20 %).
        wait_until(lambda: gateway.rss_bytes() < baseline * 1.2 + 4 * MiB,
                   f"resident memory to come back near {baseline / MiB:.0f} MiB (now {gateway.rss_bytes() / MiB:.0f})")


def test_a_peer_that_stops_reading_is_closed_after_the_stall_time(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"limits": {"outputStallSeconds": 1}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    with LineClient.connect(gateway.tcp) as bystander:
        big_value(bystander)
        # Ten replies of 1 MiB: more than the socket buffers take, less than the byte bound.
        peer = non_reader(gateway.tcp, 10)
        line = gateway.wait_log(r"closing the connection: the peer has taken none of its output for")
        assert "warning" in line
        bystander.ping_ok()
        peer.close()


def test_the_work_of_a_client_closed_for_not_reading_is_cancelled_at_the_agent(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"limits": {"outputStallSeconds": 2}}))
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    agent = LineClient.connect(gateway.tcp)
    registered = agent.call("agents/register", {"agentName": "slow-agent", "tools": [
        {"name": "slow_tool", "inputSchema": {"type": "object"}}]})
    assert "result" in registered, registered
    with LineClient.connect(gateway.tcp) as setter:
        big_value(setter)
    # One call to the agent, then far more large replies than the client will ever read.
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(gateway.tcp.address)
    client.sendall(jline(req("tools/call", 7, {"name": "slow_tool", "arguments": {}})))
    call = next_from_gateway(agent)
    assert call["method"] == "tools/call"
    client.setblocking(False)
    line = jline(req("memory/get", 8, {"key": "big"}))
    for _ in range(400):
        try:
            client.send(line)
        except BlockingIOError:
            break
    # Closed for the bytes it holds, or, if the gateway stopped reading it first, for its stall.
    gateway.wait_log(r"closing the connection: the peer (does not read|has taken none)")
    cancelled = next_from_gateway(agent)
    assert cancelled["method"] == "notifications/cancelled", cancelled
    assert cancelled["params"]["requestId"] == call["id"]
    agent.close()
    client.close()
