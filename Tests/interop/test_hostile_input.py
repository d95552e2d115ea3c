"""Hostile input: peers that hold connections without using them, dribble half lines, open too
many connections, send huge batches, or exhaust the gateway's file descriptors.

Every gateway here runs with short timeouts from a configuration file, so that a test waits
seconds, not minutes, for a bound to fire.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import threading
import time

import pytest

from sbwire import REPLY_TIMEOUT, Closed, Gateway, LineClient, jline, req, switchboard_bin

TOO_MANY_CONNECTIONS = -32006


def config_file(tmp_path, **limits) -> str:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"limits": limits}))
    return str(path)


def start_with_limits(start_gateway, tmp_path, *extra, **limits) -> Gateway:
    return start_gateway("tcp", extra=["--config", config_file(tmp_path, **limits), *extra])


def count_log(gw: Gateway, pattern: str) -> int:
    import re

    regex = re.compile(pattern)
    with gw._cond:
        return sum(1 for line in gw.stderr_lines if regex.search(line))


# --------------------------------------------------------------------------- timeouts


def test_half_line_connections_are_closed_after_the_partial_line_timeout(start_gateway, tmp_path):
    gw = start_with_limits(start_gateway, tmp_path, partialLineTimeoutSeconds=1, idleTimeoutSeconds=0, firstMessageTimeoutSeconds=0)
    clients = [LineClient.connect(gw.tcp) for _ in range(50)]
    well_behaved = LineClient.connect(gw.tcp)
    started = time.monotonic()
    for client in clients:
        client.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"pi')
    for client in clients:
        client.expect_eof(timeout=10)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 8, elapsed
    # A connection whose lines end is untouched.
    well_behaved.ping_ok()
    gw.wait_log(r"partial-line timeout")
    well_behaved.close()


def test_a_line_dribbled_too_slowly_is_cut_even_though_bytes_keep_coming(start_gateway, tmp_path):
    gw = start_with_limits(start_gateway, tmp_path, partialLineTimeoutSeconds=1, idleTimeoutSeconds=0, firstMessageTimeoutSeconds=0)
    client = LineClient.connect(gw.tcp)
    client.ping_ok()
    started = time.monotonic()
    with pytest.raises((Closed, BrokenPipeError, ConnectionResetError)):
        for byte in b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{}}':
            client.send_raw(bytes([byte]))
            time.sleep(0.1)
        client.send_raw(b"\n")
        client.recv()
    assert time.monotonic() - started < 5


def test_a_connection_that_never_sends_is_closed_after_the_first_message_timeout(start_gateway, tmp_path):
    gw = start_with_limits(start_gateway, tmp_path, firstMessageTimeoutSeconds=1)
    silent = LineClient.connect(gw.tcp)
    talker = LineClient.connect(gw.tcp)
    talker.ping_ok()
    started = time.monotonic()
    assert silent.expect_eof(timeout=10) == b""
    assert 0.9 <= time.monotonic() - started < 8
    gw.wait_log(r"first-message timeout")
    # The one that spoke in time is still served after the deadline.
    talker.ping_ok()
    talker.close()


def test_an_idle_connection_is_closed_and_a_subscribed_one_is_kept(start_gateway, tmp_path):
    gw = start_with_limits(start_gateway, tmp_path, "--log-level", "debug", idleTimeoutSeconds=1)
    idle = LineClient.connect(gw.tcp)
    idle.ping_ok()
    subscribed = LineClient.connect(gw.tcp)
    reply = subscribed.call("events/subscribe", {"topic": "news"})
    assert "subscriptionId" in reply["result"], reply
    started = time.monotonic()
    idle.expect_eof(timeout=10)
    assert time.monotonic() - started >= 0.9
    gw.wait_log(r"idle timeout")
    time.sleep(1.5)  # the subscribed connection is as quiet, for longer than the timeout
    subscribed.ping_ok()
    # An event still reaches it.
    publisher = LineClient.connect(gw.tcp)
    publisher.call("events/publish", {"topic": "news", "data": {"n": 1}})
    note = subscribed.recv()
    assert note.get("method") == "notifications/events/message", note
    subscribed.close()
    publisher.close()


def test_stdio_is_never_closed_for_idleness(tmp_path):
    path = config_file(tmp_path, idleTimeoutSeconds=1, firstMessageTimeoutSeconds=1, partialLineTimeoutSeconds=1)
    proc = subprocess.Popen(
        [str(switchboard_bin()), "serve", "--stdio", "--config", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2.5)  # past every timeout, without a byte sent
        proc.stdin.write(jline(req("ping", 1)))
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


# --------------------------------------------------------------------------- caps


def test_the_connection_over_the_per_peer_cap_gets_one_error_and_the_others_keep_working(start_gateway, tmp_path):
    gw = start_with_limits(start_gateway, tmp_path, maxConnectionsPerPeer=5)
    admitted = []
    for _ in range(5):
        client = LineClient.connect(gw.tcp)
        client.ping_ok()
        admitted.append(client)
    refused = []
    for _ in range(3):
        client = LineClient.connect(gw.tcp)
        reply = client.recv()
        assert reply["id"] is None, reply
        error = reply["error"]
        assert error["code"] == TOO_MANY_CONNECTIONS, reply
        assert error["data"]["limit"] == 5 and error["data"]["scope"] == "peer" and error["data"]["reason"], reply
        assert client.expect_eof(timeout=10) == b""
        refused.append(client)
    for client in admitted:
        client.ping_ok()
    # Three refusals, one burst: logged once.
    gw.wait_log(r"too many connections from this address")
    assert count_log(gw, r"too many connections from this address") == 1, gw.stderr_text()
    # A place freed is a place taken.
    admitted.pop().close()
    deadline = time.monotonic() + 10
    while True:
        client = LineClient.connect(gw.tcp)
        client.send(req("ping", 1))
        reply = client.recv()
        if "result" in reply:
            break
        client.close()
        assert time.monotonic() < deadline, "the freed place was never given again"
        time.sleep(0.05)
    gw.wait_log(r"admitting connections .* again after refusing")
    for c in admitted + refused + [client]:
        c.close()


def test_a_refused_connection_that_sent_a_request_still_reads_its_error(start_gateway, tmp_path):
    gw = start_with_limits(start_gateway, tmp_path, maxConnectionsPerPeer=1)
    first = LineClient.connect(gw.tcp)
    first.ping_ok()
    second = LineClient.connect(gw.tcp)
    second.send(req("ping", 1))  # unread by the gateway: no reset may destroy the error line
    reply = second.recv()
    assert reply["error"]["code"] == TOO_MANY_CONNECTIONS, reply
    first.close()
    second.close()


# --------------------------------------------------------------------------- batches


def test_a_ten_thousand_and_one_entry_batch_is_refused_with_one_error(start_gateway, tmp_path):
    gw = start_gateway("tcp")
    client = LineClient.connect(gw.tcp)
    batch = [req("memory/set", n, {"key": f"batch-{n}", "value": n}) for n in range(10_001)]
    client.send(batch)
    reply = client.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32600, str(reply)[:300]
    assert reply["error"]["data"]["limit"] == 1000 and reply["error"]["data"]["size"] == 10_001, reply
    # Nothing of it ran, nothing else is written, and the connection is still served.
    got = client.call("memory/get", {"key": "batch-0"})
    assert got["result"]["found"] is False, got
    client.ping_ok()
    # The limit itself is fine.
    client.send([req("ping", f"b{n}") for n in range(1000)])
    assert len(client.recv()) == 1000
    client.close()


# --------------------------------------------------------------------------- descriptors


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class LimitedGateway(Gateway):
    """A gateway whose open-files limit, soft and hard, is `nofile`: it cannot raise it."""

    nofile: int = 64

    def start(self, expected_listeners: int) -> "LimitedGateway":
        limit = self.nofile
        self.proc = subprocess.Popen(
            [str(switchboard_bin()), "serve", *self.args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_listening(expected_listeners)
        return self


def test_running_out_of_descriptors_pauses_accepts_without_spinning_and_resumes(tmp_path):
    path = config_file(tmp_path, firstMessageTimeoutSeconds=0, idleTimeoutSeconds=0)
    gw = LimitedGateway(["--listen", "tcp://127.0.0.1:0", "--config", path])
    gw.start(expected_listeners=1)
    try:
        gw.wait_log(r"open files limit: 64")
        served: list[LineClient] = []
        waiting: list[LineClient] = []
        # Connect until one is not answered: the kernel queued it, the gateway could not accept.
        for _ in range(200):
            client = LineClient.connect(gw.tcp)
            client.send(req("ping", 1))
            try:
                client.recv(timeout=1.0)
                served.append(client)
            except TimeoutError:
                waiting.append(client)
                break
        assert waiting, "never ran out of descriptors"
        # A few more wait in the backlog too.
        for _ in range(3):
            client = LineClient.connect(gw.tcp)
            client.send(req("ping", 1))
            waiting.append(client)
        gw.wait_log(r"out of file descriptors: \d+ open, limit 64; pausing accepts")

        before = cpu_seconds(gw.proc.pid)
        time.sleep(2.0)
        spent = cpu_seconds(gw.proc.pid) - before
        print(f"\nserved {len(served)} connections at the limit; {open_descriptors(gw.proc.pid)} descriptors open; "
              f"CPU during 2 s of exhaustion: {spent:.3f} s")
        assert spent < 0.3, f"the gateway spent {spent:.2f} s of CPU in 2 s while out of descriptors"
        assert count_log(gw, r"out of file descriptors") == 1, gw.stderr_text()

        # The connections already open are served meanwhile.
        for client in served:
            assert client.call("ping")["result"] == {}
        assert gw.proc.poll() is None

        # Descriptors freed: the waiting connections are accepted and answered, on their own.
        for client in served[:10]:
            client.close()
        for client in waiting:
            reply = client.recv(timeout=10)
            assert reply == {"jsonrpc": "2.0", "id": 1, "result": {}}, reply
        gw.wait_log(r"file descriptors available again")
        fresh = LineClient.connect(gw.tcp)
        fresh.ping_ok()
        for client in served[10:] + waiting + [fresh]:
            client.close()
    finally:
        rc = gw.stop()
        assert rc == 0, gw.stderr_text()


# --------------------------------------------------------------------------- resets


def test_a_thousand_connections_reset_mid_message_leak_nothing(start_gateway, tmp_path):
    """Peers that send half a message (some with a large params already buffered) and reset the
    connection (RST, not FIN): the gateway frees each connection at once, holds no descriptor and
    no memory for them, and keeps serving everyone else."""
    gw = start_gateway("tcp")
    survivor = LineClient.connect(gw.tcp)
    survivor.ping_ok()
    baseline_fds = open_descriptors(gw.proc.pid)
    baseline_rss = gw.rss_bytes()
    partial = [
        b'{"jsonrpc":"2.0","id":1,"method":"ping"',
        b'{"jsonrpc":"2.0","id":2,"method":"memory/set","params":{"key":"k","value":"' + b"v" * 200_000,
        b'[{"jsonrpc":"2.0","id":3,"method":"ping"},',
    ]
    for n in range(1000):
        sock = socket.create_connection(gw.tcp.address)
        sock.sendall(partial[n % len(partial)])
        # SO_LINGER with a zero timeout: close() sends RST and drops unsent data.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        if n % 100 == 99:
            survivor.ping_ok()

    # The gateway closes its end of each reset connection when it reads the reset; wait until all
    # are gone (each is read by an event loop within milliseconds, so this is quick).
    deadline = time.monotonic() + REPLY_TIMEOUT
    while open_descriptors(gw.proc.pid) > baseline_fds and time.monotonic() < deadline:
        time.sleep(0.05)
    fds = open_descriptors(gw.proc.pid)
    rss = gw.rss_bytes()
    print(f"\ndescriptors {baseline_fds} -> {fds}; RSS {baseline_rss / 2**20:.1f} -> {rss / 2**20:.1f} MiB")
    assert fds <= baseline_fds, f"{fds - baseline_fds} descriptors still held after 1,000 resets"
    assert rss < baseline_rss + 32 * 2**20, f"RSS grew by {(rss - baseline_rss) / 2**20:.1f} MiB after 1,000 resets"
    survivor.ping_ok()
    assert survivor.call("memory/get", {"key": "k"})["result"].get("found") is not True
    survivor.close()
