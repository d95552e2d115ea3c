"""Small, dependency-free helpers for talking to a Switchboard gateway.

Everything here is what a JSON-RPC client in any language would do: open a
stream socket, write one JSON text per line, read lines back.  Used by the
interop tests (the fixtures live in conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / ".build" / "debug" / "switchboard"

SERVER_INFO = {"name": "switchboard", "title": "Switchboard", "version": "0.1.0"}
ALL_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
MODERN = "2026-07-28"
LATEST_HANDSHAKE = "2025-11-25"
PV_KEY = "io.modelcontextprotocol/protocolVersion"
INFO_KEY = "io.modelcontextprotocol/serverInfo"
DEFAULT_MAX_MESSAGE = 8 * 1024 * 1024

# Bounds for every wait in the suite. Generous: the gateway under test may be
# a debug build on a small, busy machine.
STARTUP_TIMEOUT = 60.0
REPLY_TIMEOUT = 20.0
EXIT_TIMEOUT = 30.0

_LISTEN_RE = re.compile(r"listening on ((?:tcp|unix|tls|http|https)://[^\s\"',;)\]}]+)")


def switchboard_bin() -> Path:
    return Path(os.environ.get("SWITCHBOARD_BIN") or DEFAULT_BIN)


def jline(obj) -> bytes:
    """One JSON-RPC message as a wire line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def req(method: str, id_, params=None) -> dict:
    msg = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def raise_nofile(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to at least `wanted` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


# --------------------------------------------------------------------------- client


class LineClient:
    """A newline-delimited JSON-RPC client over one stream socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self._next_id = 0

    @classmethod
    def connect(cls, endpoint: "Endpoint", timeout: float = REPLY_TIMEOUT, **sockopts) -> "LineClient":
        return cls(endpoint.connect(timeout=timeout, **sockopts))

    def send(self, obj) -> None:
        self.sock.sendall(jline(obj))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def recv_line(self, timeout: float = REPLY_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply line within {timeout}s (buffered {len(self.buf)} bytes)")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def recv(self, timeout: float = REPLY_TIMEOUT):
        line = self.recv_line(timeout)
        try:
            return json.loads(line)
        except ValueError as e:  # pragma: no cover - a gateway bug, reported verbatim
            raise AssertionError(f"gateway sent a line that is not JSON: {line[:200]!r}") from e

    def call(self, method: str, params=None, id_=None, timeout: float = REPLY_TIMEOUT) -> dict:
        """Send one request and return its reply (no other request may be outstanding)."""
        if id_ is None:
            id_ = self.next_id()
        self.send(req(method, id_, params))
        reply = self.recv(timeout)
        assert reply.get("id") == id_, f"reply for another id: sent {id_!r}, got {reply!r}"
        return reply

    def ping_ok(self, timeout: float = REPLY_TIMEOUT) -> dict:
        reply = self.call("ping", timeout=timeout)
        assert "result" in reply, f"ping not answered with a result: {reply!r}"
        return reply

    def expect_eof(self, timeout: float = REPLY_TIMEOUT) -> bytes:
        """Read until the peer closes; returns whatever complete data arrived before."""
        deadline = time.monotonic() + timeout
        got = bytearray(self.buf)
        self.buf.clear()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection still open after {timeout}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return bytes(got)
            if not chunk:
                return bytes(got)
            got += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- gateway process


@dataclass
class Endpoint:
    url: str

    @property
    def kind(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def address(self):
        rest = self.url.split("://", 1)[1]
        if self.kind == "tcp":
            host, port = rest.rsplit(":", 1)
            return (host.strip("[]"), int(port))
        return rest  # unix: the path

    def connect(self, timeout: float = REPLY_TIMEOUT, rcvbuf: int | None = None, sndbuf: int | None = None):
        family = socket.AF_INET if self.kind == "tcp" else socket.AF_UNIX
        if self.kind == "tcp" and ":" in self.address[0]:
            family = socket.AF_INET6
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if sndbuf is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            s.settimeout(timeout)
            s.connect(self.address)
            if self.kind == "tcp":
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            s.close()
            raise
        return s

    def socat_address(self) -> str:
        if self.kind == "tcp":
            host, port = self.address
            return f"TCP:{host}:{port}"
        return f"UNIX-CONNECT:{self.address}"


@dataclass
class Gateway:
    """A `switchboard serve` process whose stderr is read by a thread."""

    args: list
    proc: subprocess.Popen = None
    stderr_lines: list = field(default_factory=list)
    endpoints: list = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _eof: bool = False
    cwd: str | None = None   # the gateway's working directory (agents' relative paths), default ours
    env: dict | None = None  # its environment (agents inherit it), default ours

    def start(self, expected_listeners: int) -> "Gateway":
        self.proc = subprocess.Popen(
            [str(switchboard_bin()), "serve", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.cwd,
            env=self.env,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_listening(expected_listeners)
        return self

    def _pump(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.stderr_lines.append(line)
                m = _LISTEN_RE.search(line)
                if m:
                    self.endpoints.append(Endpoint(m.group(1)))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_listening(self, n: int, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.endpoints) < n:
                if self._eof:
                    raise AssertionError(
                        f"gateway ended (rc={self.proc.poll()}) before logging {n} 'listening on' lines:\n"
                        + self.stderr_text()
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no 'listening on' line within {timeout}s:\n" + self.stderr_text())
                self._cond.wait(remaining)

    def wait_log(self, pattern: str, timeout: float = REPLY_TIMEOUT, start: int = 0) -> str:
        """The first stderr line (from line number `start` on) matching the regular expression."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.stderr_lines[start:]:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout}s:\n" + self.stderr_text())
                self._cond.wait(remaining)

    def log_position(self) -> int:
        with self._cond:
            return len(self.stderr_lines)

    def stderr_text(self, last: int = 40) -> str:
        with self._cond:
            return "\n".join(self.stderr_lines[-last:])

    def endpoint(self, kind: str) -> Endpoint:
        for ep in self.endpoints:
            if ep.kind == kind:
                return ep
        raise AssertionError(f"gateway has no {kind} listener: {[e.url for e in self.endpoints]}")

    @property
    def tcp(self) -> Endpoint:
        return self.endpoint("tcp")

    @property
    def unix(self) -> Endpoint:
        return self.endpoint("unix")

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def send_signal(self, sig=signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"gateway still running {timeout}s later:\n" + self.stderr_text()) from None

    def stop(self, sig=signal.SIGTERM, timeout: float = EXIT_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- many sockets at once


def exchange_all(socks: dict, timeout: float) -> dict:
    """Read one reply line from every socket in `socks` (key -> socket), concurrently.

    Returns key -> decoded reply. Raises AssertionError naming the sockets that
    got no reply (or were closed) when the deadline passes.
    """
    sel = selectors.DefaultSelector()
    bufs = {}
    for key, s in socks.items():
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, key)
        bufs[key] = bytearray()
    replies, closed = {}, []
    deadline = time.monotonic() + timeout
    try:
        while len(replies) + len(closed) < len(socks):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for skey, _ in sel.select(remaining):
                key = skey.data
                try:
                    chunk = skey.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed.append(key)
                    sel.unregister(skey.fileobj)
                    continue
                bufs[key] += chunk
                if b"\n" in bufs[key]:
                    replies[key] = json.loads(bufs[key].split(b"\n", 1)[0])
                    sel.unregister(skey.fileobj)
    finally:
        sel.close()
    missing = [k for k in socks if k not in replies]
    assert not missing, (
        f"{len(missing)} of {len(socks)} connections got no reply within {timeout}s "
        f"({len(closed)} were closed by the gateway); first few: {missing[:5]}"
    )
    return replies


# --------------------------------------------------------------------------- a session with a reader thread


class RpcSession:
    """A JSON-RPC peer on one socket, with a thread reading what the gateway sends.

    Unlike LineClient it copes with traffic that interleaves with replies: notifications
    (`notifications/tools/list_changed`, `notifications/progress`) are kept in arrival order,
    replies are matched by id, and requests from the gateway (`ping`) are answered.
    Several threads may have requests outstanding at once.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(None)
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._replies: dict = {}
        self.notifications: list = []
        self.closed = False
        self._ids = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @classmethod
    def connect(cls, endpoint: "Endpoint") -> "RpcSession":
        return cls(endpoint.connect())

    def _read(self) -> None:
        reader = self.sock.makefile("rb")
        try:
            for line in reader:
                if not line.strip():
                    continue
                message = json.loads(line)
                if "method" in message and "id" in message:
                    self._answer_gateway(message)
                    continue
                with self._cond:
                    if "method" in message:
                        self.notifications.append(message)
                    else:
                        self._replies[json.dumps(message.get("id"))] = message
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _answer_gateway(self, request: dict) -> None:
        if request["method"] == "ping":
            self.send({"jsonrpc": "2.0", "id": request["id"], "result": {}})
        else:
            self.send({"jsonrpc": "2.0", "id": request["id"],
                       "error": {"code": -32601, "message": "not offered by this test client"}})

    def send(self, obj) -> None:
        with self._send_lock:
            self.sock.sendall(jline(obj))

    def next_id(self) -> str:
        with self._cond:
            self._ids += 1
            return f"t{self._ids}"

    def request(self, method: str, params=None, id_=None):
        """Sends a request; returns its id (wait for the reply with `reply`)."""
        id_ = self.next_id() if id_ is None else id_
        self.send(req(method, id_, params))
        return id_

    def reply(self, id_, timeout: float = REPLY_TIMEOUT) -> dict:
        key = json.dumps(id_)
        deadline = time.monotonic() + timeout
        with self._cond:
            while key not in self._replies:
                remaining = deadline - time.monotonic()
                if self.closed:
                    raise Closed(f"connection closed before the reply to {id_!r}")
                if remaining <= 0:
                    raise TimeoutError(f"no reply to {id_!r} within {timeout}s")
                self._cond.wait(remaining)
            return self._replies.pop(key)

    def call(self, method: str, params=None, timeout: float = REPLY_TIMEOUT) -> dict:
        return self.reply(self.request(method, params), timeout)

    def has_reply(self, id_) -> bool:
        """Whether a reply to `id_` has arrived (and not been taken yet)."""
        with self._cond:
            return json.dumps(id_) in self._replies

    def result(self, method: str, params=None, timeout: float = REPLY_TIMEOUT):
        """The result of a call that must succeed."""
        reply = self.call(method, params, timeout)
        assert "result" in reply, f"{method} {params!r} failed: {reply!r}"
        return reply["result"]

    def count(self, method: str) -> int:
        with self._cond:
            return sum(1 for n in self.notifications if n["method"] == method)

    def wait_notification(self, method: str, after: int = 0, timeout: float = REPLY_TIMEOUT,
                          match=lambda n: True) -> dict:
        """The first `method` notification after the first `after` of them that satisfies `match`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                seen = [n for n in self.notifications if n["method"] == method]
                for n in seen[after:]:
                    if match(n):
                        return n
                remaining = deadline - time.monotonic()
                if self.closed:
                    raise Closed(f"connection closed while waiting for {method}")
                if remaining <= 0:
                    raise TimeoutError(f"no {method} within {timeout}s")
                self._cond.wait(remaining)

    def initialize(self, version: str = LATEST_HANDSHAKE) -> dict:
        """The MCP handshake: this session then receives list_changed notifications."""
        result = self.result("initialize", {"protocolVersion": version, "capabilities": {},
                                            "clientInfo": {"name": "interop-tests", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- helper processes


class LoggedProcess:
    """A helper process (e.g. an example agent) whose stderr lines a thread collects."""

    def __init__(self, args: list, env: dict | None = None):
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        self.lines: list = []
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def position(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_line(self, pattern: str, timeout: float = REPLY_TIMEOUT, start: int = 0) -> re.Match:
        """The first stderr line (from line number `start` on) matching the regular expression."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = regex.search(line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(
                        f"{self.args[:2]}: no stderr line matching {pattern!r} within {timeout}s "
                        f"(exit status {self.proc.poll()}):\n" + self.text())
                self._cond.wait(remaining)

    def text(self, last: int = 40) -> str:
        with self._cond:
            return "\n".join(self.lines[-last:])

    def kill(self, sig=signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=EXIT_TIMEOUT)
