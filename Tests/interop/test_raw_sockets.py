"""Raw-socket interop: what any newline-delimited JSON-RPC client does to the gateway.

Concurrency, pathological input, a peer that never reads, and graceful shutdown.
"""

from __future__ import annotations

import json
import os
import re
import select
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from sbwire import (
    DEFAULT_MAX_MESSAGE,
    INFO_KEY,
    MODERN,
    PV_KEY,
    REPLY_TIMEOUT,
    Closed,
    LineClient,
    exchange_all,
    jline,
    raise_nofile,
    req,
)

MiB = 1024 * 1024


def assert_error(reply: dict, code: int, id_=None) -> dict:
    assert reply.get("jsonrpc") == "2.0", reply
    assert "result" not in reply, reply
    assert reply.get("id", "missing") == id_, reply
    err = reply.get("error")
    assert isinstance(err, dict) and err.get("code") == code, reply
    assert isinstance(err.get("message"), str), reply
    return err


# --------------------------------------------------------------------------- basics


def test_both_listeners_serve_and_are_reported(gateway_both):
    urls = {ep.url for ep in gateway_both.endpoints}
    for ep in gateway_both.endpoints:
        with LineClient.connect(ep) as c:
            assert c.ping_ok()["result"] == {}
            status = c.call("gateway/status")["result"]
            assert status["server"] == {"name": "switchboard", "version": "0.1.0"}
            assert status["backend"] == "embedded"
            assert set(status["listeners"]) == urls
            assert status["limits"]["maxMessageBytes"] == DEFAULT_MAX_MESSAGE
            assert status["limits"]["maxNestingDepth"] == 512
            assert status["connections"]["open"] >= 1
            assert status["connections"]["accepted"] >= 1
            assert isinstance(status["uptimeSeconds"], (int, float))


def event_loop_threads(pid: int) -> list[str]:
    """The names of a process's event-loop threads (SwiftNIO's shared group names them
    NIO-SGLTN-<group>-#<n>)."""
    names = []
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        name = (task / "comm").read_text().strip()
        if re.fullmatch(r"NIO-SGLTN-\d+-#\d+", name):
            names.append(name)
    return names


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_sets_the_event_loops_and_every_one_serves(start_gateway, threads):
    """`--threads N` runs N event loops; connections spread over them all answer."""
    gw = start_gateway("tcp", extra=["--threads", str(threads)])
    clients = [LineClient.connect(gw.endpoints[0]) for _ in range(threads * 2)]
    try:
        for c in clients:
            assert c.ping_ok()["result"] == {}
        assert len(event_loop_threads(gw.proc.pid)) == threads
    finally:
        for c in clients:
            c.close()


def test_event_loops_by_default_one_on_two_cores_else_one_per_core(start_gateway):
    gw = start_gateway("tcp")
    with LineClient.connect(gw.endpoints[0]) as c:
        assert c.ping_ok()["result"] == {}
    loops = len(event_loop_threads(gw.proc.pid))
    cores = len(os.sched_getaffinity(0))
    assert loops == 1 if cores <= 2 else loops > 1, (loops, cores)


def test_threads_must_be_positive(sb_bin, tmp_path):
    refused = subprocess.run([str(sb_bin), "serve", "--threads", "0", "--listen", "tcp://127.0.0.1:0"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "--threads must be at least 1" in refused.stderr, refused
    config = tmp_path / "gateway.yaml"
    config.write_text("listen: [tcp://127.0.0.1:0]\nthreads: 0\n")
    check = subprocess.run([str(sb_bin), "config", "check", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode != 0 and f"{config}:2:" in check.stdout + check.stderr, check


def test_pipelined_requests_all_answered(endpoint):
    """1,000 requests in one write: one reply each, matched by id (any order)."""
    _, ep = endpoint
    with LineClient.connect(ep) as c:
        ids = [f"s-{i}" if i % 2 else i for i in range(1000)]
        methods = ["ping", "tools/list", "gateway/status", "no/such"]
        c.send_raw(b"".join(jline(req(methods[n % 4], id_)) for n, id_ in enumerate(ids)))
        seen = {}
        for _ in ids:
            reply = c.recv()
            assert reply["id"] not in seen, f"two replies for id {reply['id']!r}"
            seen[reply["id"]] = reply
        assert set(seen) == set(ids)
        for n, id_ in enumerate(ids):
            if methods[n % 4] == "no/such":
                assert assert_error(seen[id_], -32601, id_)["data"] == {"method": "no/such"}
            else:
                assert "result" in seen[id_], seen[id_]


def test_byte_at_a_time_and_crlf(endpoint):
    """Reads may split anywhere (even inside a UTF-8 character); CRLF is accepted."""
    _, ep = endpoint
    with LineClient.connect(ep) as c:
        id_ = "café-☎-𝄞"
        data = json.dumps(req("ping", id_), ensure_ascii=False).encode() + b"\r\n"
        for i in range(len(data)):
            c.send_raw(data[i : i + 1])
        reply = c.recv()
        assert reply == {"jsonrpc": "2.0", "id": id_, "result": {}}
        # Blank and whitespace-only lines get no reply; the next request does.
        c.send_raw(b"\n  \t\r\n\r\n" + jline(req("ping", 7)))
        assert c.recv() == {"jsonrpc": "2.0", "id": 7, "result": {}}


def test_modern_results_are_stamped(endpoint):
    _, ep = endpoint
    with LineClient.connect(ep) as c:
        d = c.call("server/discover", {"_meta": {PV_KEY: MODERN}})["result"]
        assert d["resultType"] == "complete"
        assert d["_meta"][INFO_KEY]["name"] == "switchboard"
        r = c.call("ping", {"_meta": {PV_KEY: MODERN}})["result"]
        assert r["resultType"] == "complete" and r["_meta"][INFO_KEY]["name"] == "switchboard"
        r = c.call("tools/list")["result"]
        assert r["tools"] == [] and r["resultType"] == "complete"


# --------------------------------------------------------------------------- many connections


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_two_thousand_concurrent_connections(start_gateway, kind, tmp_path):
    n = 2000
    raise_nofile(n + 256)
    # Every connection comes from one address: over the default per-peer cap of 1000.
    config = tmp_path / "many.json"
    config.write_text(json.dumps({"limits": {"maxConnectionsPerPeer": n + 16}}))
    gw = start_gateway(kind, extra=["--config", str(config)])
    ep = gw.endpoint(kind)
    socks = {}
    try:
        for i in range(n):
            socks[i] = ep.connect(timeout=30)
        # Every connection is open at once; each sends one ping.
        for i, s in socks.items():
            s.sendall(jline(req("ping", i)))
        replies = exchange_all(socks, timeout=120)
        for i, reply in replies.items():
            assert reply == {"jsonrpc": "2.0", "id": i, "result": {}}, reply

        with LineClient.connect(ep) as c:
            conns = c.call("gateway/status")["result"]["connections"]
            assert conns["open"] >= n + 1, conns
            assert conns["accepted"] >= n + 1, conns
    finally:
        for s in socks.values():
            s.close()

    # The gateway notices the closes: `open` falls back to just the asking connection.
    with LineClient.connect(ep) as c:
        deadline = time.monotonic() + 30
        while True:
            conns = c.call("gateway/status")["result"]["connections"]
            if conns["open"] == 1:
                break
            assert time.monotonic() < deadline, f"closed connections still counted as open: {conns}"


# --------------------------------------------------------------------------- pathological input


def test_huge_line_without_newline(endpoint):
    """64 MiB with no newline: memory bounded, others served; when the line ends, one -32003 carrying
    the request's id (read from the line's first bytes), and the connection is fine."""
    gw, ep = endpoint
    bad = LineClient.connect(ep)
    good = LineClient.connect(ep)
    try:
        good.ping_ok()
        bad.ping_ok()
        rss_before = gw.rss_bytes()
        chunk = b"a" * MiB
        bad.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"')
        sent = 0
        while sent < 64 * MiB:
            bad.send_raw(chunk)
            sent += MiB
            if sent % (8 * MiB) == 0:
                good.ping_ok()
        rss_after = gw.rss_bytes()
        growth = rss_after - rss_before
        assert growth < 48 * MiB, f"gateway RSS grew by {growth / MiB:.0f} MiB while discarding 64 MiB"
        # End the oversized line: it is answered once, with its id; the connection is served.
        bad.send_raw(b'"}}\n' + jline(req("ping", "after")))
        err = assert_error(bad.recv(), -32003, 1)
        assert err["data"] == {"limit": DEFAULT_MAX_MESSAGE, "size": 64 * MiB + 60}, err
        assert bad.recv() == {"jsonrpc": "2.0", "id": "after", "result": {}}
        good.ping_ok()
    finally:
        bad.close()
        good.close()


def _deep(depth: int, obj: bool) -> bytes:
    if obj:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("obj", [False, True], ids=["arrays", "objects"])
def test_200000_nesting_levels(endpoint, obj):
    _, ep = endpoint
    with LineClient.connect(ep) as bad, LineClient.connect(ep) as good:
        bad.send_raw(_deep(200_000, obj) + b"\n")
        good.ping_ok()
        err = assert_error(bad.recv(), -32700, None)
        reason = str(err.get("data", {}).get("reason", ""))
        assert any(w in reason.lower() for w in ("nest", "depth")), f"reason does not name nesting: {err}"
        bad.ping_ok()
        good.ping_ok()


def test_nesting_limit_is_512(endpoint):
    """512 nested containers parse; 513 do not (envelope object counts as one)."""
    _, ep = endpoint
    with LineClient.connect(ep) as c:
        inner = 510  # envelope object + params object + 510 arrays = 512
        ok = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":' + b"[" * inner + b"]" * inner + b"}}\n"
        c.send_raw(ok)
        assert c.recv() == {"jsonrpc": "2.0", "id": 1, "result": {}}
        inner += 1
        too_deep = b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"a":' + b"[" * inner + b"]" * inner + b"}}\n"
        c.send_raw(too_deep)
        assert_error(c.recv(), -32700, None)
        c.ping_ok()


@pytest.mark.parametrize(
    "bad_bytes",
    [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"],
    ids=["ff-fe", "overlong", "surrogate", "truncated", "above-max"],
)
def test_invalid_utf8(endpoint, bad_bytes):
    _, ep = endpoint
    with LineClient.connect(ep) as bad, LineClient.connect(ep) as good:
        bad.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"' + bad_bytes + b'"}}\n')
        good.ping_ok()
        assert_error(bad.recv(), -32700, None)
        bad.ping_ok()


def test_garbage_never_closes_the_connection(endpoint):
    _, ep = endpoint
    with LineClient.connect(ep) as c:
        for line in [b"\x00", b"{", b"nul\x00l", b"}{", b'{"a":1} x', b"\x1b[2J", b"\xff" * 1000]:
            c.send_raw(line + b"\n")
            assert_error(c.recv(), -32700, None)
        c.ping_ok()


# --------------------------------------------------------------------------- a peer that never reads


def _fill_until_gateway_stops_reading(s: socket.socket, limit: int):
    """Send pings without reading until the gateway stops reading from us.

    Returns (pings fully written, leftover bytes of a partially written ping).
    "Stopped reading" = our socket stayed unwritable for STALL seconds.
    """
    STALL = 3.0
    s.setblocking(False)
    next_id, sent_bytes, pending = 1, 0, b""
    while sent_bytes < limit:
        if not pending:
            pending = b"".join(jline(req("ping", i)) for i in range(next_id, next_id + 1000))
            next_id += 1000
        try:
            k = s.send(pending)
            sent_bytes += k
            pending = pending[k:]
        except BlockingIOError:
            _, writable, _ = select.select([], [s], [], STALL)
            if not writable:
                # Pings are equal-length-ish; count the ones fully written.
                unsent_ids = pending.count(b"\n")
                return next_id - 1 - unsent_ids, pending
    pytest.fail(
        f"the gateway kept reading {limit // MiB} MiB of requests from a peer that reads no replies "
        "(no per-connection write back-pressure)"
    )


def test_non_reading_client_does_not_stall_others(endpoint):
    gw, ep = endpoint
    stalled = ep.connect(rcvbuf=16 * 1024, sndbuf=16 * 1024)
    try:
        written, pending = _fill_until_gateway_stops_reading(stalled, limit=256 * MiB)
        assert written > 0

        # Everyone else is unaffected: an existing connection, a new one, status.
        with LineClient.connect(ep) as other:
            for _ in range(50):
                other.ping_ok(timeout=5)
            assert other.call("tools/list", timeout=5)["result"]["tools"] == []
            status = other.call("gateway/status", timeout=5)["result"]
            assert status["connections"]["open"] >= 2

        # Now the slow peer reads: every request it sent is answered exactly once.
        total = written + pending.count(b"\n")
        seen = bytearray(total + 1)
        count = 0
        buf = bytearray()
        sel = selectors.DefaultSelector()
        sel.register(stalled, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0))
        deadline = time.monotonic() + 180
        while count < total:
            assert time.monotonic() < deadline, f"only {count} of {total} replies arrived"
            for _, events in sel.select(5):
                if events & selectors.EVENT_WRITE and pending:
                    try:
                        pending = pending[stalled.send(pending) :]
                    except BlockingIOError:
                        pass
                    if not pending:
                        sel.modify(stalled, selectors.EVENT_READ)
                if events & selectors.EVENT_READ:
                    chunk = stalled.recv(1 << 20)
                    assert chunk, f"gateway closed the slow connection after {count} of {total} replies"
                    buf += chunk
                    lines = buf.split(b"\n")
                    buf = bytearray(lines.pop())
                    for line in lines:
                        r = json.loads(line)
                        assert r.get("result") == {}, r
                        assert not seen[r["id"]], f"two replies for id {r['id']}"
                        seen[r["id"]] = 1
                        count += 1
        sel.close()
        assert count == total
    finally:
        stalled.close()


# --------------------------------------------------------------------------- graceful shutdown


def _ping_after_sigterm(c: LineClient):
    """A request after SIGTERM: -32004 (id echoed), or the connection closes. Never served."""
    id_ = c.next_id()
    try:
        c.send(req("ping", id_))
        reply = c.recv()
    except (Closed, BrokenPipeError, ConnectionResetError):
        return "closed"
    if "result" in reply:
        return "served"
    err = assert_error(reply, -32004, id_)
    assert isinstance(err.get("data", {}).get("reason"), str), err
    return "refused"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_clients_connected(start_gateway, sig):
    gw = start_gateway("tcp", "unix", extra=["--shutdown-grace", "5"])
    clients = []
    try:
        plain = LineClient.connect(gw.tcp)
        plain.ping_ok()
        legacy = LineClient.connect(gw.unix)
        init = legacy.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "interop", "version": "1"}})
        assert init["result"]["protocolVersion"] == "2025-06-18"
        legacy.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        legacy.ping_ok()
        modern = LineClient.connect(gw.tcp)
        assert modern.call("server/discover", {"_meta": {PV_KEY: MODERN}})["result"]["resultType"] == "complete"
        clients = [plain, legacy, modern]

        gw.send_signal(sig)
        # The signal is handled asynchronously: ping on one connection until it is not served.
        outcome = "served"
        for _ in range(500):
            outcome = _ping_after_sigterm(plain)
            if outcome != "served":
                break
        assert outcome != "served", "requests still served 500 round trips after the signal"

        # Draining now: the other connections are refused or closed, never served.
        for c in (legacy, modern):
            assert _ping_after_sigterm(c) in ("refused", "closed")

        # A new connection is not served either (refused by the kernel, or never answered).
        for ep in gw.endpoints:
            try:
                late = LineClient.connect(ep, timeout=5)
            except (ConnectionRefusedError, FileNotFoundError):
                continue
            with late:
                assert _ping_after_sigterm(late) in ("refused", "closed")

        assert gw.wait() == 0, gw.stderr_text()
        # Every connection is closed by the gateway.
        for c in clients:
            c.expect_eof(timeout=5)
    finally:
        for c in clients:
            c.close()

    # The listeners are gone.
    for ep in gw.endpoints:
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
            ep.connect(timeout=5).close()


def test_shutdown_grace_bounds_a_stuck_peer(start_gateway):
    """A peer that never reads cannot hold the gateway past --shutdown-grace."""
    grace = 2
    gw = start_gateway("tcp", extra=["--shutdown-grace", str(grace)])
    stalled = gw.tcp.connect(rcvbuf=16 * 1024, sndbuf=16 * 1024)
    try:
        _fill_until_gateway_stops_reading(stalled, limit=256 * MiB)
        t0 = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        rc = gw.wait(timeout=grace + 20)
        elapsed = time.monotonic() - t0
        assert rc == 0, gw.stderr_text()
        assert elapsed < grace + 8, f"exit took {elapsed:.1f}s with --shutdown-grace {grace}"
    finally:
        stalled.close()
    with pytest.raises(ConnectionRefusedError):
        gw.tcp.connect(timeout=5).close()
