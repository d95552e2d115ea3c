"""`switchboard serve --stdio`: refusal of unusable stdio, and EOF handling."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile

import pytest

from sbwire import EXIT_TIMEOUT, jline, req


def _serve_stdio(sb_bin, **kw):
    return subprocess.run(
        [str(sb_bin), "serve", "--stdio"], capture_output=False, timeout=EXIT_TIMEOUT, **kw
    )


def test_stdin_dev_null_is_refused(sb_bin):
    with open("/dev/null", "rb") as devnull:
        r = _serve_stdio(sb_bin, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == b"", "nothing may be written to the protocol stream"
    msg = r.stderr.decode("utf-8", "replace")
    assert re.search(r"stdin|standard input", msg, re.I), f"unclear message: {msg!r}"


def test_stdin_regular_file_is_refused(sb_bin):
    with tempfile.TemporaryFile() as f:
        f.write(jline(req("ping", 1)))
        f.seek(0)
        r = _serve_stdio(sb_bin, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == b""
    assert re.search(r"stdin|standard input", r.stderr.decode("utf-8", "replace"), re.I), r.stderr


def test_stdout_regular_file_is_refused(sb_bin):
    with tempfile.TemporaryFile() as out:
        r = _serve_stdio(sb_bin, input=jline(req("ping", 1)), stdout=out, stderr=subprocess.PIPE)
        out.seek(0)
        written = out.read()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert written == b""
    assert re.search(r"stdout|standard output", r.stderr.decode("utf-8", "replace"), re.I), r.stderr


def test_eof_after_requests_flushes_every_reply_and_exits_0(sb_bin):
    lines = []
    expected = {}
    for i in range(2000):
        method = ["ping", "tools/list", "gateway/status", "nope/nope"][i % 4]
        lines.append(jline(req(method, i)))
        expected[i] = method
    # Things that get no reply: notifications and blank lines.
    lines.insert(10, jline({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    lines.insert(20, jline({"jsonrpc": "2.0", "method": "no/such/notification", "params": {}}))
    lines.insert(30, b"  \r\n")
    # A parse error gets exactly one reply with id null.
    lines.insert(40, b"{oops\n")
    r = _serve_stdio(sb_bin, input=b"".join(lines), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])

    replies = [json.loads(line) for line in r.stdout.split(b"\n") if line]  # stdout is only JSON-RPC
    by_id = {}
    nulls = []
    for reply in replies:
        assert reply.get("jsonrpc") == "2.0", reply
        if reply.get("id") is None:
            nulls.append(reply)
            continue
        assert reply["id"] not in by_id, f"two replies for {reply['id']}"
        by_id[reply["id"]] = reply
    assert set(by_id) == set(expected), f"missing replies: {sorted(set(expected) - set(by_id))[:10]}"
    assert [n["error"]["code"] for n in nulls] == [-32700]
    for i, method in expected.items():
        if method == "nope/nope":
            assert by_id[i]["error"]["code"] == -32601
        else:
            assert "result" in by_id[i], by_id[i]


def test_stdio_over_a_socketpair(sb_bin):
    """stdin/stdout may be a socket: requests served, EOF (shutdown) ends the process with 0."""
    ours, theirs = socket.socketpair()
    with ours:
        proc = subprocess.Popen(
            [str(sb_bin), "serve", "--stdio"], stdin=theirs, stdout=theirs, stderr=subprocess.PIPE
        )
        theirs.close()
        ours.settimeout(EXIT_TIMEOUT)
        ours.sendall(jline(req("initialize", 1, {"protocolVersion": "2099-01-01", "capabilities": {}})))
        buf = b""
        while b"\n" not in buf:
            chunk = ours.recv(65536)
            assert chunk, "EOF before the initialize reply"
            buf += chunk
        init = json.loads(buf.split(b"\n")[0])
        assert init["result"]["protocolVersion"] == "2025-11-25"
        assert init["result"]["serverInfo"]["name"] == "switchboard"
        ours.sendall(jline(req("ping", 2)))
        ours.shutdown(socket.SHUT_WR)
        rest = buf.split(b"\n", 1)[1]
        while True:
            chunk = ours.recv(65536)
            if not chunk:
                break
            rest += chunk
        assert json.loads(rest) == {"jsonrpc": "2.0", "id": 2, "result": {}}
        try:
            rc = proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("gateway did not exit after EOF on stdin")
        assert rc == 0, proc.stderr.read()
        proc.stderr.close()


@pytest.mark.parametrize("extra, threads", [([], 1), (["--threads", "2"], 2)])
def test_a_stdio_session_alone_runs_on_one_event_loop_unless_told(sb_bin, extra, threads):
    """Serving only --stdio, every call and every agent pipe shares one event loop (no call
    crosses threads); --threads still decides."""
    proc = subprocess.Popen([str(sb_bin), "serve", "--stdio", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        proc.stdin.write(jline(req("ping", 1)))
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["result"] == {}
        loops = [name for name in (
            open(f"/proc/{proc.pid}/task/{task}/comm").read().strip() for task in os.listdir(f"/proc/{proc.pid}/task"))
            if re.fullmatch(r"NIO-SGLTN-\d+-#\d+", name)]
        assert len(loops) == threads, loops
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0
