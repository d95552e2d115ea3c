"""Task callbacks and the egress policy (chapter 10, 10.6.8.1).

A callback to 127.0.0.1 is refused at `tasks/submit` (-32005 naming the reason) unless
`egress.allow` lists it, and then it is delivered; a host name that resolves to loopback passes
`tasks/submit` and is refused when the callback is delivered, with a warning in the log and
nothing posted.

Callbacks are made to fire without an agent: a task for a tool no one offers fails at once
(chapter 10, 10.6.2), and a failed task is posted like any other that ended.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sbwire import REPLY_TIMEOUT, RpcSession

# --------------------------------------------------------------------------- helpers


class CallbackReceiver:
    """An HTTP server on 127.0.0.1 that keeps every POST (path, Host header, JSON body)."""

    def __init__(self):
        posts = self.posts = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.put((self.path, self.headers.get("Host"), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = CallbackReceiver()
    yield r
    r.close()


@pytest.fixture
def gateway(start_gateway, tmp_path):
    """gateway(config dict or None) -> (a gateway on TCP, a session on it)."""
    sessions = []

    def start(config: dict | None = None):
        extra = []
        if config is not None:
            path = tmp_path / "gateway.json"
            path.write_text(json.dumps(config, indent=2))
            extra = ["--config", str(path)]
        gw = start_gateway("tcp", extra=extra)
        session = RpcSession.connect(gw.tcp)
        sessions.append(session)
        return gw, session

    yield start
    for session in sessions:
        session.close()


def submit_failing(session: RpcSession, callback: str) -> str:
    """A task for a tool no agent offers, with `callback`: it fails at once and the callback fires."""
    return session.result("tasks/submit", {"taskType": "nobody_offers_this", "taskData": {}, "callback": callback})["taskId"]


def loopback_names_in_hosts_file() -> list:
    """Names other than localhost that /etc/hosts maps to loopback only (often the machine's own)."""
    names = set()
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split("#")[0].split()
        if len(fields) >= 2 and (fields[0].startswith("127.") or fields[0] == "::1"):
            names.update(n for n in fields[1:] if n != "localhost" and not n.endswith(".localhost"))
    usable = []
    for name in sorted(names):
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
        except OSError:
            continue
        if addresses and all(a.startswith("127.") or a == "::1" for a in addresses):
            usable.append(name)
    return usable[:1]


# --------------------------------------------------------------------------- callbacks


def test_a_callback_to_loopback_is_refused_at_submit(gateway, receiver):
    gw, session = gateway()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    reply = session.call("tasks/submit", {"taskType": "nobody_offers_this", "taskData": {}, "callback": url})
    assert reply["error"]["code"] == -32005, reply
    assert reply["error"]["data"] == {
        "reason": "callback to 127.0.0.1 refused: loopback addresses are not allowed (egress.allow does not list it)",
        "callback": url,
    }
    assert session.result("tasks/list")["tasks"] == []
    assert receiver.posts.empty()


def test_a_callback_to_a_listed_address_is_delivered(gateway, receiver):
    gw, session = gateway({"egress": {"allow": ["127.0.0.1"]}})
    task_id = submit_failing(session, f"http://127.0.0.1:{receiver.port}/hooks/task?x=1")
    path, host, body = receiver.posts.get(timeout=REPLY_TIMEOUT)
    assert path == "/hooks/task?x=1"
    assert host == f"127.0.0.1:{receiver.port}"
    assert body["taskId"] == task_id and body["state"] == "FAILED", body


# `localhost` resolves to 127.0.0.1 (and maybe ::1): with only ::1 listed, it passes `tasks/submit`
# (it might resolve to ::1 alone) and is refused at delivery on its 127.0.0.1. A name that the
# hosts file maps to loopback is refused at delivery by the default policy.
DELIVERY_CASES = [("localhost", {"egress": {"allow": ["::1"]}})] + [(name, None) for name in loopback_names_in_hosts_file()]


@pytest.mark.parametrize("host,config", DELIVERY_CASES, ids=[case[0] for case in DELIVERY_CASES])
def test_a_name_resolving_to_loopback_is_refused_at_delivery(gateway, receiver, host, config):
    gw, session = gateway(config)
    url = f"http://{host}:{receiver.port}/hook"
    at = gw.log_position()
    task_id = submit_failing(session, url)
    line = gw.wait_log(rf"task {task_id}: callback to {host} \(127\.\d+\.\d+\.\d+\) refused: ", start=at)
    assert "loopback addresses are not allowed (egress.allow does not list it)" in line, line
    assert f"{url} is not delivered, and not retried" in line, line
    assert "warning" in line.lower(), line
    # The refusal is decided before connecting: nothing was, or will be, posted.
    session.result("ping")
    assert receiver.posts.empty()
