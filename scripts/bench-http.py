#!/usr/bin/env python3
"""MCP tools/call over Streamable HTTP through three gateways, side by side, in one run.

    scripts/bench-http.sh [OPTIONS]          sets up what is needed, then runs this script
    python3 scripts/bench-http.py --switchboard BIN --contextforge-venv DIR --fastmcp-python PY [OPTIONS]

The same echo agent (Tests/interop/agents/stdio_tool_server.py --tool echo --label e, an MCP
server over stdio) stands behind each gateway:

  switchboard   `switchboard serve --listen http://127.0.0.1:0 --listen tcp://127.0.0.1:0
                --config CONFIG` with the agent under mcpServers; MCP at /mcp. Also measured:
                the same tools/call over the newline-delimited JSON-RPC TCP listener (the HTTP
                hop's cost is the difference), and REST POST /api/v1/tasks/submit.
  contextforge  IBM ContextForge (mcp-contextforge-gateway, one uvicorn process, SQLite, in-memory
                cache) in front of the agent bridged to Streamable HTTP by its own
                `mcpgateway.translate` (ContextForge federates HTTP/SSE servers only, not stdio
                ones): the bridge is registered with POST /gateways, its tool bundled into a
                virtual server with POST /servers, and called at /servers/ID/mcp with a JWT.
  fastmcp       FastMCP's proxy (`fastmcp.server.create_proxy` over a StdioTransport) served
                with `.run(transport="http")`; MCP at /mcp.

For each gateway, in turn (only one runs at a time): the MCP handshake (initialize, read
mcp-session-id, notifications/initialized; then MCP-Protocol-Version: 2025-11-25 on every
request), a warm-up, then
  seq  --calls calls one after another on one keep-alive connection (at most --duration s);
  xN   --concurrency clients, each with its own connection and MCP session, each making
       --per-client-calls calls one after another (the phase stops at --duration s).
Latency is the time from writing a request to having read its whole response (JSON or SSE).
CPU per call is the gateway process's utime+stime (/proc/PID/stat) over the phase divided by
the calls; its agent (a child) and, for ContextForge, its bridge are not counted in it (the
bridge's is its own column). The driver's own CPU per call is shown too: the load generator
is one Python process on the same cores as the gateway, so at high rates it competes with the
gateway for CPU and its own cost sets a ceiling.

Output: a Markdown table on stdout; progress and set-up on stderr; each gateway's logs in
--workdir (default .build/bench-http).
"""

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "Tests" / "interop" / "agents" / "stdio_tool_server.py"
PROTOCOL = "2025-11-25"
CLK_TCK = os.sysconf("SC_CLK_TCK")

FASTMCP_PROXY = """
import sys
from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy
port, command = int(sys.argv[1]), sys.argv[2:]
proxy = create_proxy(StdioTransport(command=command[0], args=command[1:], keep_alive=True), name="fastmcp-proxy")
proxy.run(transport="http", host="127.0.0.1", port=port, show_banner=False, log_level="WARNING")
"""


def log(message):
    print(f"[bench-http {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Wire: a minimal HTTP/1.1 keep-alive client and a newline-delimited JSON-RPC client, blocking
# (sequential phases, handshakes) and asyncio (concurrent phases) over one parser each.


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def messages(self):
        """The JSON-RPC messages in the body: one JSON document, or SSE `data:` events."""
        if not self.body:
            return []
        if self.headers.get("content-type", "").startswith("text/event-stream"):
            out, data = [], []
            for line in self.body.decode().splitlines() + [""]:
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "" and data:
                    out.append(json.loads("\n".join(data)))
                    data = []
            return out
        return [json.loads(self.body)]

    def result(self, id_=None):
        for message in self.messages():
            if id_ is None or message.get("id") == id_:
                if "error" in message:
                    raise BenchError(f"JSON-RPC error: {message['error']}")
                return message.get("result")
        raise BenchError(f"no JSON-RPC answer in HTTP {self.status}: {self.body[:300]!r}")


def parse_http(buf):
    """(bytes consumed, Response) for the first whole response in buf, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    pos = end + 4
    length = headers.get("content-length")
    if length is not None:
        stop = pos + int(length)
        if len(buf) < stop:
            return None
        return stop, Response(status, headers, bytes(buf[pos:stop]))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                while True:  # trailers, then the blank line
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return None
                    if eol == pos:
                        return eol + 2, Response(status, headers, bytes(body))
                    pos = eol + 2
            if len(buf) < pos + size + 2:
                return None
            body += buf[pos:pos + size]
            pos += size + 2
    if status in (204, 304) or status < 200:
        return pos, Response(status, headers, b"")
    raise BenchError(f"HTTP {status} without a length on a keep-alive connection")


def parse_line(buf):
    eol = buf.find(b"\n")
    if eol < 0:
        return None
    return eol + 1, Response(200, {}, bytes(buf[:eol]))


class SyncConn:
    def __init__(self, port, parse, timeout=60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parse = parse
        self.buf = bytearray()

    def request(self, data):
        self.sock.sendall(data)
        while True:
            parsed = self.parse(self.buf)
            if parsed:
                used, response = parsed
                del self.buf[:used]
                return response
            chunk = self.sock.recv(262144)
            if not chunk:
                raise BenchError("connection closed by the gateway")
            self.buf += chunk

    def close(self):
        self.sock.close()


class AsyncConn(asyncio.Protocol):
    """One connection carrying one request at a time."""

    def __init__(self, parse):
        self.parse = parse
        self.buf = bytearray()
        self.waiter = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if self.waiter is not None:
            parsed = self.parse(self.buf)
            if parsed:
                used, response = parsed
                del self.buf[:used]
                waiter, self.waiter = self.waiter, None
                waiter.set_result(response)

    def connection_lost(self, exc):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BenchError(f"connection lost: {exc}"))
            self.waiter = None

    def request(self, data):
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    @staticmethod
    async def adopt(sync_conn):
        """Moves a connected SyncConn (handshake done) onto the running event loop."""
        sock = sync_conn.sock
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: AsyncConn(sync_conn.parse), sock=sock)
        protocol.buf += sync_conn.buf
        return protocol


def http_request(path, port, headers, body):
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            "Accept: application/json, text/event-stream"]
    head += [f"{name}: {value}" for name, value in headers]
    prefix = ("\r\n".join(head) + "\r\nContent-Length: ").encode()
    return lambda data: prefix + str(len(data)).encode() + b"\r\n\r\n" + data


def rpc(id_, method, params=None):
    message = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


CALL = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":{"text":"x"}}}'


class MCPSession:
    """An HTTP connection with a finished MCP handshake; `encode(i)` makes the i-th tools/call."""

    def __init__(self, port, path, auth_headers=()):
        self.port, self.path = port, path
        self.conn = SyncConn(port, parse_http)
        init = rpc(0, "initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                     "clientInfo": {"name": "bench-http", "version": "1"}})
        response = self.conn.request(http_request(path, port, auth_headers, b"")(init))
        if response.status != 200:
            raise BenchError(f"initialize: HTTP {response.status}: {response.body[:300]!r}")
        response.result(0)
        headers = list(auth_headers) + [("MCP-Protocol-Version", PROTOCOL)]
        session = response.headers.get("mcp-session-id")
        if session:
            headers.append(("Mcp-Session-Id", session))
        self.wrap = http_request(path, port, headers, b"")
        response = self.conn.request(self.wrap(b'{"jsonrpc":"2.0","method":"notifications/initialized"}'))
        if response.status not in (200, 202, 204):
            raise BenchError(f"notifications/initialized: HTTP {response.status}: {response.body[:300]!r}")

    def tools(self):
        return [tool["name"] for tool in self.conn.request(self.wrap(rpc(1, "tools/list"))).result(1)["tools"]]

    def encoder(self, tool):
        wrap, name = self.wrap, tool.encode()
        return lambda i: wrap(CALL % (i, name))


def ok_echo(response):
    return response.status == 200 and b'"e:x"' in response.body


def ok_submit(response):
    return 200 <= response.status < 300 and b'"taskId"' in response.body


# ---------------------------------------------------------------------------------------------
# Measurement.


def cpu_seconds(pid):
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU of the gateway, of an optional bridge and of this driver over one phase."""

    def __init__(self, gateway_pid, bridge_pid=None):
        self.pids = (gateway_pid, bridge_pid)

    def __enter__(self):
        self.start = [cpu_seconds(pid) for pid in self.pids] + [self_cpu()]
        return self

    def __exit__(self, *_):
        stop = [cpu_seconds(pid) for pid in self.pids] + [self_cpu()]
        self.gateway, self.bridge, self.driver = (b - a for a, b in zip(self.start, stop))


def percentile(sorted_ns, fraction):
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(fraction * len(sorted_ns)))] / 1000


class Row:
    def __init__(self, gateway, mode, calls, errors, seconds, latencies, meter, has_bridge):
        latencies.sort()
        self.gateway, self.mode, self.calls, self.errors = gateway, mode, calls, errors
        self.rate = calls / seconds if seconds > 0 else float("nan")
        self.p50, self.p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        per_call = lambda seconds_: seconds_ * 1e6 / calls if calls else float("nan")
        self.cpu, self.driver = per_call(meter.gateway), per_call(meter.driver)
        self.bridge = per_call(meter.bridge) if has_bridge else None


def run_sequential(conn, encode, ok, calls, duration, warmup):
    for i in range(warmup):
        conn.request(encode(i))
    latencies, errors = [], 0
    clock = time.perf_counter_ns
    deadline = clock() + int(duration * 1e9)
    began = clock()
    for i in range(calls):
        sent = clock()
        response = conn.request(encode(warmup + i))
        done = clock()
        latencies.append(done - sent)
        if not ok(response):
            errors += 1
        if done > deadline:
            break
    return len(latencies), errors, (clock() - began) / 1e9, latencies


def run_concurrent(conns, encoders, ok, per_client, duration, warmup, meter_factory):
    """Runs the warm-up and the timed phase; the meter covers only the timed phase."""
    result = {}

    async def main():
        protocols = [await AsyncConn.adopt(conn) for conn in conns]
        clock = time.perf_counter_ns
        latencies, errors = [], [0]

        async def client(protocol, encode, first, count, record, deadline):
            for i in range(first, first + count):
                sent = clock()
                response = await protocol.request(encode(i))
                done = clock()
                if record:
                    latencies.append(done - sent)
                    if not ok(response):
                        errors[0] += 1
                if done > deadline:
                    return

        async def phase(first, count, record):
            deadline = clock() + int(duration * 1e9)
            tasks = [client(p, e, first, count, record, deadline) for p, e in zip(protocols, encoders)]
            await asyncio.wait_for(asyncio.gather(*tasks), duration + 60)

        await phase(0, warmup, False)
        with meter_factory() as meter:
            began = clock()
            await phase(warmup, per_client, True)
            seconds = (clock() - began) / 1e9
        for protocol in protocols:
            protocol.transport.close()
        result.update(calls=len(latencies), errors=errors[0], seconds=seconds, latencies=latencies, meter=meter)

    asyncio.run(main())
    return result


# ---------------------------------------------------------------------------------------------
# Processes.


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what, probe, timeout, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: the process exited with {proc.returncode} (see {proc.log_path})")
        try:
            value = probe()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            last = error
        time.sleep(0.2)
    raise BenchError(f"{what}: not ready after {timeout:.0f} s ({last})")


class Process:
    """A child in its own process group, logging to a file; stop() ends the group."""

    def __init__(self, name, argv, workdir, env=None, cwd=None):
        self.log_path = workdir / f"{name}.log"
        self.log_file = open(self.log_path, "wb")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
                                      env=env, cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid
        self.returncode = None

    def poll(self):
        self.returncode = self.popen.poll()
        return self.returncode

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # whatever of the group is left (the agent)
        except ProcessLookupError:
            pass
        self.popen.wait()
        self.log_file.close()


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def agent_argv(args):
    return [args.agent_python, str(AGENT), "--tool", "echo", "--label", "e"]


def find_echo(names):
    for name in names:
        if name == "echo" or name.endswith(("echo", ".echo", "-echo", "_echo", "/echo")):
            return name
    return None


# ---------------------------------------------------------------------------------------------
# The gateways. Each start() returns a Target: the gateway's pid (and bridge pid), how to open an
# MCP session, and the tool name; stop() ends everything it started.


class Target:
    def __init__(self, name, pid, port, path, tool, auth_headers=(), bridge_pid=None):
        self.name, self.pid, self.port, self.path, self.tool = name, pid, port, path, tool
        self.auth_headers, self.bridge_pid = tuple(auth_headers), bridge_pid

    def session(self):
        return MCPSession(self.port, self.path, self.auth_headers)


class Switchboard:
    name = "switchboard"

    def __init__(self, args, workdir):
        self.args, self.workdir, self.procs = args, workdir, []

    def start(self):
        binary = self.args.switchboard
        if not binary or not os.access(binary, os.X_OK):
            raise BenchError(f"no switchboard binary at {binary!r} (pass --switchboard)")
        config = self.workdir / "switchboard.yaml"
        config.write_text("mcpServers:\n  echo:\n    command: " + json.dumps(self.args.agent_python)
                          + "\n    args: " + json.dumps(agent_argv(self.args)[1:]) + "\n")
        proc = Process("switchboard", [binary, "serve", "--listen", "http://127.0.0.1:0", "--listen",
                                       "tcp://127.0.0.1:0", "--config", str(config)], self.workdir)
        self.procs.append(proc)

        def listening():
            text = proc.log_text()
            http = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            tcp = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", text)
            return http and tcp and (int(http.group(1)), int(tcp.group(1)))

        self.http_port, self.tcp_port = wait_for("switchboard listening", listening, 30, proc)

        def tool():
            session = MCPSession(self.http_port, "/mcp")
            try:
                return find_echo(session.tools())
            finally:
                session.conn.close()

        name = wait_for("switchboard's echo agent ready", tool, 30, proc)
        return Target(self.name, proc.pid, self.http_port, "/mcp", name)

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()


class FastMCP:
    name = "fastmcp"

    def __init__(self, args, workdir):
        self.args, self.workdir, self.procs = args, workdir, []

    def start(self):
        python = self.args.fastmcp_python
        if not python or not os.access(python, os.X_OK):
            raise BenchError(f"no Python with fastmcp at {python!r} (pass --fastmcp-python)")
        port = free_port()
        proc = Process("fastmcp", [python, "-c", FASTMCP_PROXY, str(port)] + agent_argv(self.args), self.workdir)
        self.procs.append(proc)
        wait_for("fastmcp listening", lambda: port_open(port), 60, proc)

        def tool():
            session = MCPSession(port, "/mcp")
            try:
                return find_echo(session.tools())
            finally:
                session.conn.close()

        name = wait_for("fastmcp's echo tool", tool, 30, proc)
        return Target(self.name, proc.pid, port, "/mcp", name)

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()


class ContextForge:
    """ContextForge 1.0.x: one uvicorn process, SQLite in a fresh directory, in-memory cache.

    Settings that differ from its defaults, and why:
      RATE_LIMITING_ENABLED=false   its default 100 requests/minute per client on MCP would cap the run
      SSRF_ALLOW_LOCALHOST=true     the bridge it federates listens on 127.0.0.1
      USE_STATEFUL_SESSIONS=true    (unless --contextforge-stateless) so that a client's MCP session
                                    keeps one upstream session to the bridge, as Switchboard and
                                    FastMCP keep one agent process; stateless (its default) opens an
                                    upstream session per call
      CACHE_TYPE=memory             no Redis: one process
      MCPGATEWAY_UI_ENABLED=false, MCPGATEWAY_ADMIN_API_ENABLED=true, LOG_LEVEL=ERROR
    plus the secrets it refuses to start without (JWT_SECRET_KEY, AUTH_ENCRYPTION_SECRET, ...), made
    fresh for each run.
    """

    name = "contextforge"

    def __init__(self, args, workdir):
        self.args, self.workdir, self.procs = args, workdir / "contextforge", []

    def start(self):
        venv = Path(self.args.contextforge_venv or "")
        python = venv / "bin" / "python"
        if not self.args.contextforge_venv or not os.access(python, os.X_OK):
            raise BenchError(f"no ContextForge virtual environment at {str(venv)!r} (scripts/bench-http.sh makes "
                             "one; or pass --contextforge-venv)")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        port, bridge_port = free_port(), free_port()
        while bridge_port == port:
            bridge_port = free_port()
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("MCPGATEWAY_", "MCG_")):
                del env[key]
        env.update({
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTH_ENCRYPTION_SECRET": secrets.token_urlsafe(48),
            "BASIC_AUTH_USER": "admin",
            "BASIC_AUTH_PASSWORD": "Bb1!" + secrets.token_urlsafe(24),
            "PLATFORM_ADMIN_EMAIL": "admin@example.com",
            "PLATFORM_ADMIN_PASSWORD": "Aa1!" + secrets.token_urlsafe(24),
            "MCPGATEWAY_UI_ENABLED": "false",
            "MCPGATEWAY_ADMIN_API_ENABLED": "true",
            "DATABASE_URL": f"sqlite:///{self.workdir}/mcp.db",
            "CACHE_TYPE": "memory",
            "RATE_LIMITING_ENABLED": "false",
            "SSRF_ALLOW_LOCALHOST": "true",
            "LOG_LEVEL": "ERROR",
            "USE_STATEFUL_SESSIONS": "false" if self.args.contextforge_stateless else "true",
            "HOST": "127.0.0.1",
            "PORT": str(port),
        })
        # The bridge: the stdio agent as a Streamable HTTP server (it reads the same settings).
        bridge = Process("contextforge-bridge", [
            str(python), "-m", "mcpgateway.translate", "--stdio", " ".join(agent_argv(self.args)),
            "--expose-streamable-http", "--host", "127.0.0.1", "--port", str(bridge_port), "--logLevel", "error",
        ], self.workdir, env=env, cwd=self.workdir)
        self.procs.append(bridge)
        gateway = Process("contextforge", [str(venv / "bin" / "mcpgateway"), "--host", "127.0.0.1", "--port", str(port)],
                          self.workdir, env=env, cwd=self.workdir)
        self.procs.append(gateway)
        token = subprocess.run([str(python), "-m", "mcpgateway.utils.create_jwt_token", "--username",
                                "admin@example.com", "--exp", "240", "--secret", env["JWT_SECRET_KEY"]],
                               env=env, cwd=self.workdir, capture_output=True, text=True, timeout=120)
        if token.returncode != 0 or not token.stdout.strip():
            raise BenchError(f"create_jwt_token failed: {token.stderr[-2000:]}")
        auth = {"Authorization": "Bearer " + token.stdout.strip().splitlines()[-1]}
        wait_for("contextforge's bridge listening", lambda: port_open(bridge_port), 120, bridge)
        wait_for("contextforge /health", lambda: self.api("GET", port, "/health", None, {})[0] == 200, 180, gateway)

        status, body = self.api("POST", port, "/gateways", {"name": "echo", "url": f"http://127.0.0.1:{bridge_port}/mcp",
                                                           "transport": "STREAMABLEHTTP"}, auth)
        if status not in (200, 201):
            raise BenchError(f"POST /gateways: HTTP {status}: {body}")
        gateway_id = body["id"]

        def tool():
            status, tools = self.api("GET", port, "/tools", None, auth)
            for tool in tools if status == 200 else []:
                if tool.get("gatewayId") == gateway_id:
                    return tool
            return None

        tool = wait_for("contextforge's echo tool in /tools", tool, 30, gateway)
        status, body = self.api("POST", port, "/servers", {"server": {
            "name": "bench_echo", "description": "bench-http", "associated_tools": [tool["id"]]}}, auth)
        if status not in (200, 201):
            raise BenchError(f"POST /servers: HTTP {status}: {body}")
        path = f"/servers/{body['id']}/mcp"
        target = Target(self.name, gateway.pid, port, path, None, auth.items(), bridge.pid)
        session = target.session()
        try:
            target.tool = find_echo(session.tools())
        finally:
            session.conn.close()
        if not target.tool:
            raise BenchError(f"no echo tool at {path}")
        return target

    @staticmethod
    def api(method, port, path, payload, headers):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read()[:500]

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()


# ---------------------------------------------------------------------------------------------


def measure_mcp(target, args, label, rows):
    has_bridge = target.bridge_pid is not None
    meter = lambda: Meter(target.pid, target.bridge_pid)

    session = target.session()
    encode = session.encoder(target.tool)
    for i in range(args.warmup):
        session.conn.request(encode(i))
    with meter() as m:
        calls, errors, seconds, latencies = run_sequential(session.conn, encode, ok_echo, args.calls, args.duration, 0)
    session.conn.close()
    rows.append(Row(label, "MCP HTTP seq", calls, errors, seconds, latencies, m, has_bridge))
    log(f"{label} MCP HTTP seq: {calls} calls, {calls / seconds:.0f}/s, {errors} errors")

    sessions = [target.session() for _ in range(args.concurrency)]
    result = run_concurrent([s.conn for s in sessions], [s.encoder(target.tool) for s in sessions], ok_echo,
                            args.per_client_calls, args.duration, args.concurrent_warmup, meter)
    rows.append(Row(label, f"MCP HTTP ×{args.concurrency}", result["calls"], result["errors"], result["seconds"],
                    result["latencies"], result["meter"], has_bridge))
    log(f"{label} MCP HTTP ×{args.concurrency}: {result['calls']} calls, "
        f"{result['calls'] / result['seconds']:.0f}/s, {result['errors']} errors")


def measure_switchboard_extra(gateway, target, args, rows):
    meter = lambda: Meter(target.pid)

    # The same tools/call over the JSON-RPC TCP listener (newline-delimited).
    name = target.tool.encode()
    encode = lambda i: CALL % (i, name) + b"\n"
    conn = SyncConn(gateway.tcp_port, parse_line)
    for i in range(args.warmup):
        conn.request(encode(i))
    with meter() as m:
        calls, errors, seconds, latencies = run_sequential(conn, encode, ok_echo, args.calls, args.duration, 0)
    conn.close()
    rows.append(Row("switchboard", "JSON-RPC TCP seq", calls, errors, seconds, latencies, m, False))
    log(f"switchboard JSON-RPC TCP seq: {calls} calls, {calls / seconds:.0f}/s, {errors} errors")

    conns = [SyncConn(gateway.tcp_port, parse_line) for _ in range(args.concurrency)]
    result = run_concurrent(conns, [encode] * len(conns), ok_echo, args.per_client_calls, args.duration,
                            args.concurrent_warmup, meter)
    rows.append(Row("switchboard", f"JSON-RPC TCP ×{args.concurrency}", result["calls"], result["errors"],
                    result["seconds"], result["latencies"], result["meter"], False))
    log(f"switchboard JSON-RPC TCP ×{args.concurrency}: {result['calls']} calls, "
        f"{result['calls'] / result['seconds']:.0f}/s, {result['errors']} errors")

    # REST task submission (the tasks then run on the agent in the background: last, on purpose).
    if not args.no_rest:
        submit = http_request("/api/v1/tasks/submit", target.port, (), b"")
        body = b'{"taskType":"echo","taskData":{"text":"x"}}'
        encode = lambda i: submit(body)
        conn = SyncConn(target.port, parse_http)
        first = conn.request(encode(0))
        if not ok_submit(first):
            log(f"switchboard REST submit: HTTP {first.status}: {first.body[:300]!r}")
        with meter() as m:
            calls, errors, seconds, latencies = run_sequential(conn, encode, ok_submit, args.calls, args.duration, 0)
        conn.close()
        rows.append(Row("switchboard", "REST tasks/submit seq", calls, errors, seconds, latencies, m, False))
        log(f"switchboard REST submit seq: {calls} submits, {calls / seconds:.0f}/s, {errors} errors")

        conns = [SyncConn(target.port, parse_http) for _ in range(args.concurrency)]
        result = run_concurrent(conns, [encode] * len(conns), ok_submit, args.per_client_calls, args.duration, 0, meter)
        rows.append(Row("switchboard", f"REST tasks/submit ×{args.concurrency}", result["calls"], result["errors"],
                        result["seconds"], result["latencies"], result["meter"], False))
        log(f"switchboard REST submit ×{args.concurrency}: {result['calls']} submits, "
            f"{result['calls'] / result['seconds']:.0f}/s, {result['errors']} errors")


def fmt(value, digits=0):
    if value is None:
        return "–"
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def table(rows, failures):
    lines = ["| gateway | mode | calls | calls/s | p50 µs | p99 µs | gateway CPU µs/call | bridge CPU µs/call "
             "| driver CPU µs/call | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.gateway} | {r.mode} | {r.calls} | {fmt(r.rate)} | {fmt(r.p50)} | {fmt(r.p99)} | "
                     f"{fmt(r.cpu, 1)} | {fmt(r.bridge, 1)} | {fmt(r.driver, 1)} | {r.errors} |")
    for name, reason in failures:
        lines.append(f"| {name} | FAILED | | | | | | | | {reason} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switchboard", default=os.environ.get("SWITCHBOARD_BIN"),
                        help="the switchboard binary (default: $SWITCHBOARD_BIN)")
    parser.add_argument("--contextforge-venv", default=str(ROOT / ".build" / "bench-venvs" / "contextforge"))
    parser.add_argument("--contextforge-stateless", action="store_true",
                        help="ContextForge's default stateless Streamable HTTP (an upstream session per call)")
    parser.add_argument("--fastmcp-python", default=None, help="a Python with fastmcp (default: this one)")
    parser.add_argument("--agent-python", default=shutil.which("python3") or sys.executable,
                        help="the Python that runs the echo agent behind every gateway")
    parser.add_argument("--only", action="append", choices=["switchboard", "contextforge", "fastmcp"],
                        help="measure only this gateway (repeatable)")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per phase (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--per-client-calls", type=int, default=100,
                        help="calls per concurrent client (default 100)")
    parser.add_argument("--duration", type=float, default=60,
                        help="upper bound in seconds of each timed phase; a phase that reaches it stops early "
                             "and reports what it did (default 60)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed sequential calls first (default 200)")
    parser.add_argument("--concurrent-warmup", type=int, default=5, help="untimed calls per client first (default 5)")
    parser.add_argument("--no-rest", action="store_true", help="skip REST tasks/submit on Switchboard")
    parser.add_argument("--workdir", default=str(ROOT / ".build" / "bench-http"), help="logs and state")
    args = parser.parse_args()
    args.fastmcp_python = args.fastmcp_python or sys.executable
    if not AGENT.exists():
        sys.exit(f"bench-http: no echo agent at {AGENT}")

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    except (ValueError, OSError):
        pass

    order = [Switchboard, ContextForge, FastMCP]
    wanted = args.only or [g.name for g in order]
    rows, failures = [], []
    for gateway_class in order:
        if gateway_class.name not in wanted:
            continue
        gateway = gateway_class(args, workdir)
        log(f"{gateway.name}: starting")
        try:
            target = gateway.start()
            log(f"{gateway.name}: ready (pid {target.pid}, port {target.port}, {target.path}, tool {target.tool!r})")
            measure_mcp(target, args, gateway.name, rows)
            if isinstance(gateway, Switchboard):
                measure_switchboard_extra(gateway, target, args, rows)
        except Exception as error:  # noqa: BLE001 - report it and go on with the next gateway
            reason = f"{type(error).__name__}: {error}".replace("|", "/").replace("\n", " ")
            log(f"{gateway.name}: FAILED: {reason}")
            failures.append((gateway.name, reason[:300]))
        finally:
            gateway.stop()

    print(f"## MCP tools/call over Streamable HTTP: {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print()
    print(table(rows, failures))
    print()
    by = {(r.gateway, r.mode): r for r in rows}
    http, tcp = by.get(("switchboard", "MCP HTTP seq")), by.get(("switchboard", "JSON-RPC TCP seq"))
    if http and tcp:
        print(f"- Switchboard's HTTP hop: p50 {fmt(http.p50 - tcp.p50)} µs and "
              f"{fmt(http.cpu - tcp.cpu, 1)} µs of gateway CPU per sequential call over JSON-RPC on TCP.")
    print(f"- seq: one connection, one call at a time, {args.calls} calls (after {args.warmup} untimed); "
          f"×{args.concurrency}: {args.concurrency} connections, each its own MCP session, "
          f"{args.per_client_calls} calls each (after {args.concurrent_warmup} untimed); a phase stops at "
          f"{args.duration:g} s. REST rows count task submissions (POST /api/v1/tasks/submit, each an echo task "
          "that Switchboard runs on the agent meanwhile: that work is in the gateway CPU of those rows).")
    print("- The load generator is one Python process on the same cores as the gateway (driver CPU µs/call): "
          "where gateway + driver CPU per call approaches 1e6 × cores / calls/s, the machine, not the gateway, "
          "is the limit. Latency under concurrency includes the driver's own queueing.")
    print("- Gateway CPU is the gateway process's utime+stime (/proc/PID/stat, 1/%d s ticks), agents excluded; "
          "ContextForge's bridge (mcpgateway.translate, the stdio agent as Streamable HTTP, which ContextForge "
          "needs) is its own column. ContextForge sessions: %s."
          % (CLK_TCK, "stateless (its default)" if args.contextforge_stateless else "stateful (USE_STATEFUL_SESSIONS=true)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
