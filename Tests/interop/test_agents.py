"""Agents behind the gateway, end to end, with real components only.

The agents are the examples in examples/agents (a Node.js stdio server, a FastMCP server, an
attached Python agent) and `mcp-server-time` from PyPI; the clients are the official MCP SDK
and raw sockets. Each test writes its own configuration, with absolute paths, to a temporary
directory and starts its own gateway.

Waiting: agents start asynchronously, so a test waits for what it needs. Where the gateway
announces a change (`notifications/tools/list_changed` to handshake-era sessions, a log line, a
progress notification, a reply) the test awaits it; only states that nothing announces (an
instance's state in `agents/get` when the catalog does not change) are polled, with a bounded
loop and a short sleep.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from sbwire import MODERN, REPLY_TIMEOUT, REPO, LoggedProcess, RpcSession

AGENTS_DIR = REPO / "examples" / "agents"
ECHO_AGENT = AGENTS_DIR / "echo_agent.mjs"
FASTMCP_ECHO = AGENTS_DIR / "fastmcp_echo.py"
ATTACHED_AGENT = AGENTS_DIR / "attached_agent.py"

# Upper bound for agents to come up: Node starts in a fraction of a second, FastMCP and
# mcp-server-time take a few seconds on a small machine (a debug gateway, a busy CI box).
AGENT_START = 60.0

LIST_CHANGED = "notifications/tools/list_changed"
PROGRESS = "notifications/progress"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def node():
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed (scripts/setup.sh --test installs it)")
    return path


@pytest.fixture(scope="session")
def venv_bin():
    """The Python environment running the tests also holds the agents' packages (requirements.txt)."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "mcp-server-time").is_file():
        pytest.fail(f"mcp-server-time is not installed next to {sys.executable} (pip install -r requirements.txt)")
    if importlib.util.find_spec("fastmcp") is None:
        pytest.fail(f"fastmcp is not installed for {sys.executable} (pip install -r requirements.txt)")
    return bin_dir


@pytest.fixture(scope="session")
def socat():
    path = shutil.which("socat")
    if path is None:
        pytest.fail("socat is not installed")
    return path


@pytest.fixture
def write_config(tmp_path):
    """write_config(section, servers, name) -> the path of a JSON configuration file."""

    def write(section: str, servers: dict, name: str = "agents.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({section: servers}, indent=2))
        return path

    return write


@pytest.fixture
def fleet(start_gateway, write_config):
    """fleet(agents) -> (gateway on TCP running the `agents` map, an initialized MCP session on it)."""
    sessions = []

    def start(agents: dict, *kinds: str, extra: tuple = ()):
        gw = start_gateway(*(kinds or ("tcp",)), extra=["--config", str(write_config("agents", agents)), *extra])
        session = RpcSession.connect(gw.tcp)
        sessions.append(session)
        session.initialize()  # handshake era: this session hears notifications/tools/list_changed
        return gw, session

    yield start
    for session in sessions:
        session.close()


@pytest.fixture
def attach():
    """attach(url, *args) -> the attached-agent example running against the gateway at `url`."""
    started = []

    def start(url: str, *args: str) -> LoggedProcess:
        agent = LoggedProcess([sys.executable, ATTACHED_AGENT, url, *args])
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()


def node_echo(node: str, **extra) -> dict:
    return {"command": node, "args": [str(ECHO_AGENT)], **extra}


def fastmcp_echo(**extra) -> dict:
    return {"command": sys.executable, "args": [str(FASTMCP_ECHO)], **extra}


def time_server(venv_bin: Path, **extra) -> dict:
    return {"command": str(venv_bin / "mcp-server-time"), **extra}


# --------------------------------------------------------------------------- helpers


def tool_names(session: RpcSession) -> set:
    names, cursor = set(), None
    while True:
        result = session.result("tools/list", {"cursor": cursor} if cursor else {})
        names |= {tool["name"] for tool in result["tools"]}
        cursor = result.get("nextCursor")
        if not cursor:
            return names


def await_catalog(session: RpcSession, check, what: str, timeout: float = AGENT_START):
    """Re-evaluates `check()` after each notifications/tools/list_changed until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        seen = session.count(LIST_CHANGED)
        value = check()
        if value is not None:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{what}: not so within {timeout}s")
        try:
            session.wait_notification(LIST_CHANGED, after=seen, timeout=remaining)
        except TimeoutError:
            pass  # one last check above, then the assertion


def await_tools(session: RpcSession, wanted: set, absent: set = frozenset(), timeout: float = AGENT_START) -> set:
    """Waits until tools/list has every name in `wanted` and none in `absent`."""
    last = set()

    def check():
        nonlocal last
        last = tool_names(session)
        return last if wanted <= last and not (absent & last) else None

    try:
        return await_catalog(session, check, f"tools {sorted(wanted)} listed, {sorted(absent)} not", timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; tools/list: {sorted(last)}") from None


def poll(fetch, check, what: str, timeout: float = AGENT_START, interval: float = 0.05):
    """For states nothing announces: fetches until `check(value)` holds; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so within {timeout}s; last: {json.dumps(value)[:2000]}")
        time.sleep(interval)


def status(session: RpcSession, agent_id: str) -> dict:
    return session.result("agents/get", {"agentId": agent_id})


def listed(session: RpcSession, **filters) -> list:
    return session.result("agents/list", filters)["agents"]


def call_tool(session: RpcSession, name: str, arguments: dict, meta: dict | None = None, timeout=REPLY_TIMEOUT) -> dict:
    params = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return session.call("tools/call", params, timeout)


def text_of(result: dict) -> str:
    return "".join(block["text"] for block in result["content"] if block["type"] == "text")


def echoed(reply: dict) -> str:
    assert "result" in reply, reply
    assert not reply["result"].get("isError"), reply
    return text_of(reply["result"])


def error_of(reply: dict, code: int) -> dict:
    assert "error" in reply, f"expected error {code}, got {reply!r}"
    assert reply["error"]["code"] == code, reply
    return reply["error"]


def progress_with(token):
    """Matches a notifications/progress for `token`, exactly (1 and "1" are different tokens)."""
    return lambda n: type(n["params"]["progressToken"]) is type(token) and n["params"]["progressToken"] == token


def sdk_client(params: StdioServerParameters, errlog, mode: str, **kw) -> Client:
    return Client(stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=30, **kw)


def socat_params(socat: str, endpoint) -> StdioServerParameters:
    return StdioServerParameters(command=socat, args=["STDIO", endpoint.socat_address()])


class ListChanges:
    """An SDK message handler: an event set by each notifications/tools/list_changed."""

    def __init__(self):
        self.event = anyio.Event()

    async def __call__(self, message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.event.set()

    def arm(self) -> anyio.Event:
        self.event = anyio.Event()
        return self.event


async def sdk_await_tools(client: Client, changes: ListChanges, wanted: set, timeout: float = AGENT_START) -> list:
    """The SDK's tool listing once it has every name in `wanted`.

    A handshake-era session waits for list_changed between listings; a 2026-07-28 session gets
    no notifications from the gateway, so it lists again after a short sleep.
    """
    names: set = set()
    try:
        with anyio.fail_after(timeout):
            while True:
                changed = changes.arm()
                tools = (await client.list_tools(cache_mode="refresh")).tools
                names = {tool.name for tool in tools}
                if wanted <= names:
                    return tools
                if client.protocol_version == MODERN:
                    await anyio.sleep(0.1)
                else:
                    await changed.wait()
    except TimeoutError:
        raise AssertionError(f"tools {sorted(wanted)} not all listed within {timeout}s: {sorted(names)}") from None


def sdk_text(result) -> str:
    assert not result.is_error, result
    return "".join(block.text for block in result.content if block.type == "text")


# --------------------------------------------------------------------------- the MCP SDK through the gateway


def mcp_servers(node: str, venv_bin: Path) -> dict:
    return {"time": time_server(venv_bin), "fastmcp": fastmcp_echo(), "node": node_echo(node)}


# `echo` is offered by two servers, so each is namespaced by its template; the rest keep their names.
ALL_TOOLS = {"get_current_time", "convert_time", "fastmcp__echo", "reverse", "count", "node__echo", "slow_echo"}


@pytest.fixture(params=["stdio", "tcp"])
def sdk_server(request, sb_bin, node, venv_bin, write_config, start_gateway):
    """How the SDK reaches a gateway configured with an MCP host's `mcpServers` file."""
    config = write_config("mcpServers", mcp_servers(node, venv_bin), "mcp.json")
    if request.param == "stdio":
        return StdioServerParameters(command=str(sb_bin), args=["serve", "--stdio", "--config", str(config)])
    gw = start_gateway("tcp", extra=["--config", str(config)])
    return socat_params(request.getfixturevalue("socat"), gw.tcp)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_lists_and_calls_every_server(sdk_server, mode):
    changes = ListChanges()
    with tempfile.TemporaryFile("w+") as errlog:
        async with sdk_client(sdk_server, errlog, mode, message_handler=changes) as client:
            tools = await sdk_await_tools(client, changes, ALL_TOOLS)
            by_name = {tool.name: tool for tool in tools}
            assert set(by_name) == ALL_TOOLS
            # Definitions pass through: the Node agent's title, FastMCP's schema from type hints.
            assert by_name["node__echo"].title == "Echo"
            assert by_name["fastmcp__echo"].input_schema["required"] == ["text"]
            assert "timezone" in by_name["get_current_time"].input_schema["properties"]

            assert sdk_text(await client.call_tool("node__echo", {"text": "héllo ✓"})) == "héllo ✓"
            assert sdk_text(await client.call_tool("fastmcp__echo", {"text": "héllo ✓"})) == "héllo ✓"
            assert sdk_text(await client.call_tool("reverse", {"text": "abc"})) == "cba"
            updates = []

            async def on_progress(progress, total, message):
                updates.append((progress, total))

            counted = await client.call_tool("count", {"n": 3, "delay": 0.01}, progress_callback=on_progress)
            assert sdk_text(counted) == "counted to 3"
            assert updates == [(1, 3), (2, 3), (3, 3)]  # FastMCP's progress, relayed with the SDK's token
            now = await client.call_tool("get_current_time", {"timezone": "Europe/Paris"})
            assert not now.is_error, now
            assert now.structured_content["timezone"] == "Europe/Paris"
            converted = await client.call_tool(
                "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
            assert not converted.is_error, converted
            assert converted.structured_content["target"]["datetime"].startswith(
                converted.structured_content["source"]["datetime"][:10])

            with pytest.raises(MCPError) as info:
                await client.call_tool("echo", {"text": "ambiguous"})  # only the namespaced names exist
            assert info.value.code == -32602, info.value.error


# The example configurations, run the way examples/agents/README.md runs them.
EXAMPLE_TOOLS = {"echo__echo", "slow_echo", "fastmcp-echo__echo", "reverse", "count", "get_current_time", "convert_time"}


@pytest.mark.parametrize("name", ["agents.yaml", "mcp-servers.json"])
def test_example_configs_work_as_they_are(sb_bin, start_gateway, venv_bin, node, name):
    config = REPO / "examples" / "configs" / name
    check = subprocess.run([str(sb_bin), "config", "check", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and "OK" in check.stdout, check
    # From the repository root, with the Python environment's bin first on PATH (`python3`, `mcp-server-time`).
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    gw = start_gateway("tcp", extra=["--config", str(config)], cwd=REPO, env=env)
    with RpcSession.connect(gw.tcp) as session:
        session.initialize()
        assert await_tools(session, EXAMPLE_TOOLS) == EXAMPLE_TOOLS
        assert echoed(call_tool(session, "echo__echo", {"text": "one"})) == "one"
        assert echoed(call_tool(session, "fastmcp-echo__echo", {"text": "two"})) == "two"
        now = call_tool(session, "get_current_time", {"timezone": "UTC"})
        assert now["result"]["structuredContent"]["timezone"] == "UTC", now
        if name == "agents.yaml":
            echoes = listed(session, template="echo")
            assert [(a["agentId"], a["maxConcurrency"]) for a in echoes] == [("echo#1", 8), ("echo#2", 8)]


# --------------------------------------------------------------------------- load


@pytest.mark.anyio
async def test_hundreds_of_concurrent_calls_queue_and_are_all_answered(fleet, node, socat):
    """900 calls at once to two instances that take 4 each: they queue, and every one is answered."""
    gw, session = fleet({"node": node_echo(node, instances=2, maxConcurrency=4)})
    poll(lambda: listed(session, template="node"),
         lambda agents: len(agents) == 2 and all(a["currentState"] == "IDLE" and "processId" in a for a in agents),
         "both instances running")

    # The gateway's own view while the calls run: no instance ever holds more than 4.
    samples = []

    async def sample(stop: anyio.Event):
        probe = RpcSession.connect(gw.tcp)
        try:
            while not stop.is_set():
                samples.append(await anyio.to_thread.run_sync(lambda: listed(probe, template="node")))
                await anyio.sleep(0.02)
        finally:
            probe.close()

    def slow(text: str) -> dict:
        return {"text": text, "delay": 0.02, "steps": 1}

    stop = anyio.Event()
    async with anyio.create_task_group() as sampler:
        sampler.start_soon(sample, stop)

        # 300 through one SDK session (the SDK pipelines them on one connection) ...
        with tempfile.TemporaryFile("w+") as errlog:
            async with sdk_client(socat_params(socat, gw.tcp), errlog, "auto") as client:
                answers = {}

                async def one(i: int):
                    answers[i] = sdk_text(await client.call_tool("slow_echo", slow(f"sdk-{i}")))

                async with anyio.create_task_group() as tg:
                    for i in range(300):
                        tg.start_soon(one, i)
                assert answers == {i: f"sdk-{i}" for i in range(300)}

        # ... and 600 pipelined over 6 raw connections at once.
        def raw_connection(c: int) -> dict:
            with RpcSession.connect(gw.tcp) as raw:
                ids = {raw.request("tools/call", {"name": "slow_echo", "arguments": slow(f"raw-{c}-{i}")}): f"raw-{c}-{i}"
                       for i in range(100)}
                return {ids[id_]: echoed(raw.reply(id_, timeout=60)) for id_ in ids}

        results = {}

        async def run_raw(c: int):
            results[c] = await anyio.to_thread.run_sync(raw_connection, c)

        async with anyio.create_task_group() as tg:
            for c in range(6):
                tg.start_soon(run_raw, c)
        for c in range(6):
            assert results[c] == {f"raw-{c}-{i}": f"raw-{c}-{i}" for i in range(100)}
        stop.set()

    in_flight = [a["inFlight"] for snapshot in samples for a in snapshot]
    assert samples and max(in_flight) <= 4, f"an instance held more calls than its maxConcurrency: {max(in_flight)}"
    assert any(a["currentState"] == "OVERLOADED" for snapshot in samples for a in snapshot), \
        "no sample saw an instance at its maxConcurrency (so nothing queued?)"
    completed = sum(a["performanceMetrics"]["tasksCompleted"] for a in listed(session, template="node"))
    assert completed == 900
    assert all(a["performanceMetrics"]["tasksCompleted"] > 0 for a in listed(session, template="node")), \
        "one instance got no work"


# --------------------------------------------------------------------------- failures


def test_killed_agent_fails_its_call_and_comes_back(fleet, node):
    gw, session = fleet({"node": node_echo(node)})
    await_tools(session, {"echo", "slow_echo"})
    before = status(session, "node#1")
    pid = before["processId"]

    doomed = session.request("tools/call", {"name": "slow_echo", "arguments": {"text": "doomed", "delay": 30, "steps": 30},
                                            "_meta": {"progressToken": "doomed"}})
    session.wait_notification(PROGRESS, match=progress_with("doomed"))  # the call is on the agent
    log_at = gw.log_position()
    os.kill(pid, signal.SIGKILL)

    error = error_of(session.reply(doomed), -32010)
    assert error["data"]["agent"] == "node#1", error
    assert isinstance(error["data"].get("reason"), str) and error["data"]["reason"], error

    # It comes back by itself. A restarting instance keeps its tools in the catalog (calls wait
    # for it), so there is no list_changed to await: the gateway's log line is the event.
    ready = gw.wait_log(r"agent node#1 ready \(pid \d+\)", start=log_at)
    new_pid = int(re.search(r"\(pid (\d+)\)", ready).group(1))
    assert new_pid != pid
    after = status(session, "node#1")
    assert after["processId"] == new_pid and after["currentState"] == "IDLE", after
    assert after["healthStatus"] == "HEALTHY"
    assert echoed(call_tool(session, "echo", {"text": "back"})) == "back"
    metrics = status(session, "node#1")["performanceMetrics"]
    assert metrics["tasksFailed"] == 1 and metrics["tasksCompleted"] == 1, metrics


def test_agents_that_never_start_leave_the_others_serving(fleet, node):
    gw, session = fleet({
        "ghost": {"command": "switchboard-test-no-such-command"},
        "quitter": {"command": "sh", "args": ["-c", "echo 'quitter: giving up' >&2; exit 3"]},
        "node": node_echo(node),
    })
    await_tools(session, {"echo", "slow_echo"})
    assert echoed(call_tool(session, "echo", {"text": "still here"})) == "still here"

    ghost = poll(lambda: status(session, "ghost#1"), lambda s: s["currentState"] == "ERROR", "ghost#1 in ERROR")
    assert 'command "switchboard-test-no-such-command" not found on PATH' in ghost["error"], ghost
    quitter = poll(lambda: status(session, "quitter#1"), lambda s: s["currentState"] == "ERROR", "quitter#1 in ERROR")
    assert isinstance(quitter.get("error"), str) and quitter["error"], quitter
    gw.wait_log(r"agent=quitter#1 .*quitter: giving up")  # its stderr reaches the gateway's log

    errored = {a["agentId"] for a in listed(session, state="ERROR")}
    assert {"ghost#1", "quitter#1"} <= errored
    assert echoed(call_tool(session, "echo", {"text": "and still"})) == "and still"
    assert tool_names(session) == {"echo", "slow_echo"}


# --------------------------------------------------------------------------- the attached agent example


def attached_example_tools() -> list:
    """The tool definitions the attached-agent example registers (read from its source, not imported)."""
    namespace = {"__name__": "attached_agent_example"}
    exec(compile(ATTACHED_AGENT.read_text(), str(ATTACHED_AGENT), "exec"), namespace)
    return namespace["TOOLS"]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_attached_agent_example(start_gateway, attach, kind):
    gw = start_gateway("tcp", "unix")
    session = RpcSession.connect(gw.tcp)
    session.initialize()
    agent = attach(gw.endpoint(kind).url)

    await_tools(session, {"moving_average", "risk_score"})
    listing = {tool["name"]: tool for tool in session.result("tools/list")["tools"]}
    for tool in attached_example_tools():
        assert listing[tool["name"]] == tool  # the definitions as registered, untouched

    reply = call_tool(session, "moving_average", {"prices": [1, 2, 3, 4, 5, 6], "window": 3})
    assert reply["result"]["structuredContent"] == {"window": 3, "averages": [2, 3, 4, 5], "servedBy": "pricing v1"}
    bad = call_tool(session, "moving_average", {"prices": [1, 2], "window": 5})
    assert bad["result"]["isError"] is True, bad

    (agent_id,) = [a["agentId"] for a in listed(session, template="pricing")]
    assert agent_id.startswith("pricing@")
    st = status(session, agent_id)
    assert st["kind"] == "attached" and st["agentType"] == "analytics" and st["version"] == "1"
    assert st["currentState"] == "IDLE" and st["activeVersion"] is True
    assert sorted(st["tools"]) == ["moving_average", "risk_score"]
    assert st["capabilities"] == ["pricing", "risk"]
    assert st["resourceRequirements"] == {"cpu": 1, "memory": 128 * 1024 * 1024}
    assert st["performanceMetrics"]["tasksCompleted"] == 2

    # Progress from the agent, and a cancellation that reaches it.
    prices = [100 + (i % 7) - (i % 3) for i in range(200)]
    long_call = session.request("tools/call", {"name": "risk_score", "arguments": {"prices": prices, "simulations": 10**7},
                                               "_meta": {"progressToken": 99}})
    first = session.wait_notification(PROGRESS, match=progress_with(99))["params"]
    assert first["total"] == 10**7 and 0 < first["progress"] < 10**7, first
    session.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": long_call, "reason": "enough"}})
    agent.wait_line(r'cancelled request "sb-[^"]+"')
    session.result("ping")
    assert not session.has_reply(long_call), "a cancelled request was answered"
    poll(lambda: status(session, agent_id), lambda s: s["inFlight"] == 0, "the cancelled call's slot freed")

    # Killed: OFFLINE at once, and its tools leave the catalog.
    agent.kill()
    await_tools(session, set(), absent={"moving_average", "risk_score"})
    st = status(session, agent_id)
    assert st["currentState"] == "OFFLINE", st
    assert isinstance(st.get("error"), str) and st["error"], st
    error_of(call_tool(session, "moving_average", {"prices": [1]}), -32602)


def test_attached_agent_is_found_by_its_name(start_gateway, attach):
    """agents/get takes an id or a name; the name is what the agent registered as."""
    gw = start_gateway("tcp")
    session = RpcSession.connect(gw.tcp)
    agent = attach(gw.tcp.url, "--name", "quotes")
    agent_id = agent.wait_line(r"registered as (\S+)").group(1)
    by_id = status(session, agent_id)
    assert by_id["agentName"] == "quotes", by_id
    assert status(session, "quotes")["agentId"] == agent_id


# --------------------------------------------------------------------------- progress and cancellation


def test_progress_reaches_each_client_with_its_own_token(fleet, node):
    gw, first = fleet({"node": node_echo(node)})
    await_tools(first, {"slow_echo"})
    second = RpcSession.connect(gw.tcp)
    try:
        args = {"text": "tick", "delay": 0.3, "steps": 3}
        # The same token from two clients, and 7 and "7" from one: each call gets exactly its own.
        calls = [
            (first, first.request("tools/call", {"name": "slow_echo", "arguments": args, "_meta": {"progressToken": 7}}), 7),
            (first, first.request("tools/call", {"name": "slow_echo", "arguments": args, "_meta": {"progressToken": "7"}}), "7"),
            (second, second.request("tools/call", {"name": "slow_echo", "arguments": args, "_meta": {"progressToken": 7}}), 7),
        ]
        for session, id_, token in calls:
            assert echoed(session.reply(id_)) == "tick"
        for session, id_, token in calls:
            # Relayed in order, and all before the reply (the reader thread records in arrival order).
            updates = [n["params"] for n in session.notifications if n["method"] == PROGRESS and progress_with(token)(n)]
            assert updates == [{"progressToken": token, "progress": k, "total": 3, "message": f"step {k} of 3"}
                               for k in (1, 2, 3)], updates
    finally:
        second.close()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_progress_and_cancellation(fleet, node, socat, mode):
    gw, session = fleet({"node": node_echo(node)})
    await_tools(session, {"slow_echo"})
    with tempfile.TemporaryFile("w+") as errlog:
        async with sdk_client(socat_params(socat, gw.tcp), errlog, mode) as client:
            updates = []

            async def on_progress(progress, total, message):
                updates.append((progress, total, message))

            result = await client.call_tool("slow_echo", {"text": "tick", "delay": 0.3, "steps": 3}, progress_callback=on_progress)
            assert sdk_text(result) == "tick"
            assert updates == [(k, 3, f"step {k} of 3") for k in (1, 2, 3)]

            # Cancel a slow call once it is running on the agent.
            running = anyio.Event()

            async def on_first(progress, total, message):
                running.set()

            log_at = gw.log_position()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call_tool("slow_echo", {"text": "never", "delay": 30, "steps": 30},
                                                       progress_callback=on_first))
                with anyio.fail_after(REPLY_TIMEOUT):
                    await running.wait()
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled

            # The agent was told: its stderr line is in the gateway's log, under its name.
            await anyio.to_thread.run_sync(lambda: gw.wait_log(r'agent=node#1 .*cancelled request "sb-', start=log_at))
            poll(lambda: status(session, "node#1"), lambda s: s["inFlight"] == 0, "the cancelled call's slot freed")
            assert sdk_text(await client.call_tool("slow_echo", {"text": "after", "delay": 0})) == "after"


# --------------------------------------------------------------------------- operating the fleet


def test_maintenance_holds_calls_until_the_agent_is_back(fleet, node):
    gw, session = fleet({"node": node_echo(node)})
    await_tools(session, {"echo"})

    st = session.result("agents/setState", {"agentId": "node#1", "state": "MAINTENANCE"})
    assert st["currentState"] == "MAINTENANCE", st
    assert [a["agentId"] for a in listed(session, state="MAINTENANCE")] == ["node#1"]

    held = session.request("tools/call", {"name": "echo", "arguments": {"text": "held"}})
    session.result("ping")  # the call above has been taken in by now
    assert not session.has_reply(held), "a call went to an agent in maintenance"
    assert status(session, "node#1")["inFlight"] == 0

    st = session.result("agents/setState", {"agentId": "node#1", "state": "IDLE"})
    assert st["currentState"] in ("IDLE", "BUSY"), st  # BUSY: the held call may already be on it
    assert echoed(session.reply(held)) == "held"
    assert status(session, "node#1")["currentState"] == "IDLE"

    error_of(session.call("agents/setState", {"agentId": "node#1", "state": "SLEEPING"}), -32602)
    error_of(session.call("agents/setState", {"agentId": "nobody#1", "state": "MAINTENANCE"}), -32602)


def test_drain_finishes_the_call_then_stops_the_instance_for_good(fleet, node):
    gw, session = fleet({"node": node_echo(node)})
    await_tools(session, {"slow_echo"})
    pid = status(session, "node#1")["processId"]

    last = session.request("tools/call", {"name": "slow_echo", "arguments": {"text": "last", "delay": 1, "steps": 4},
                                          "_meta": {"progressToken": "last"}})
    session.wait_notification(PROGRESS, match=progress_with("last"))
    st = session.result("agents/drain", {"agentId": "node#1"})
    assert st["draining"] is True and st["inFlight"] == 1, st

    assert echoed(session.reply(last)) == "last"  # in-flight work finishes
    gw.wait_log(r"agent node#1 stopped")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # Not restarted: gone from the registry and from the catalog.
    await_tools(session, set(), absent={"echo", "slow_echo"})
    assert listed(session, template="node") == []
    error_of(session.call("agents/get", {"agentId": "node#1"}), -32602)
    error_of(call_tool(session, "echo", {"text": "anyone?"}), -32602)


def test_a_call_queued_for_a_drained_template_is_answered_when_it_is_gone(fleet, node):
    """A call waiting for the only instance, which then drains away, gets an error at once (not after 60 s)."""
    # A short grace: if the queued call is never answered, the gateway must not hold the teardown.
    gw, session = fleet({"node": node_echo(node, maxConcurrency=1)}, extra=("--shutdown-grace", "1"))
    await_tools(session, {"slow_echo"})
    busy = session.request("tools/call", {"name": "slow_echo", "arguments": {"text": "busy", "delay": 0.5, "steps": 2},
                                          "_meta": {"progressToken": "busy"}})
    session.wait_notification(PROGRESS, match=progress_with("busy"))
    queued = session.request("tools/call", {"name": "echo", "arguments": {"text": "queued"}})
    session.result("ping")
    session.result("agents/drain", {"agentId": "node#1"})
    assert echoed(session.reply(busy)) == "busy"
    gw.wait_log(r"agent node#1 stopped")
    # No instance is left to wait for: -32011 (no agent available), or -32602 as the tool is gone.
    reply = session.reply(queued, timeout=5)
    assert reply.get("error", {}).get("code") in (-32011, -32602), reply


def test_scale_up_and_down(fleet, node):
    gw, session = fleet({"node": node_echo(node)})
    await_tools(session, {"echo"})

    def running(n):
        return lambda agents: len(agents) == n and all(a["currentState"] == "IDLE" and "processId" in a for a in agents)

    assert session.result("agents/scale", {"template": "node", "instances": 3}) == \
        {"template": "node", "instancesBefore": 1, "instances": 3}
    agents = poll(lambda: listed(session, template="node"), running(3), "three instances running")
    assert [a["agentId"] for a in agents] == ["node#1", "node#2", "node#3"]
    assert len({a["processId"] for a in agents}) == 3

    log_at = gw.log_position()
    assert session.result("agents/scale", {"template": "node", "instances": 1}) == \
        {"template": "node", "instancesBefore": 3, "instances": 1}
    gw.wait_log(r"agent node#3 stopped", start=log_at)
    gw.wait_log(r"agent node#2 stopped", start=log_at)
    assert [a["agentId"] for a in listed(session, template="node")] == ["node#1"]

    log_at = gw.log_position()
    session.result("agents/scale", {"template": "node", "instances": 0})
    await_tools(session, set(), absent={"echo", "slow_echo"})
    gw.wait_log(r"agent node#1 stopped", start=log_at)  # its tools leave first, then it stops
    assert listed(session, template="node") == []

    session.result("agents/scale", {"template": "node", "instances": 1})
    await_tools(session, {"echo", "slow_echo"})
    assert [a["agentId"] for a in listed(session, template="node")] == ["node#4"]
    assert echoed(call_tool(session, "echo", {"text": "scaled"})) == "scaled"

    error_of(session.call("agents/scale", {"template": "nobody", "instances": 1}), -32602)
    error_of(session.call("agents/scale", {"template": "node", "instances": 1001}), -32602)


def test_scale_down_drains_the_newest_instances(fleet, node):
    gw, session = fleet({"node": node_echo(node)})
    await_tools(session, {"echo"})
    session.result("agents/scale", {"template": "node", "instances": 11})
    poll(lambda: listed(session, template="node"),
         lambda agents: len(agents) == 11 and all(a["currentState"] == "IDLE" for a in agents), "eleven instances running")
    session.result("agents/scale", {"template": "node", "instances": 2})
    agents = poll(lambda: listed(session, template="node"), lambda agents: len(agents) == 2, "nine instances stopped")
    assert sorted(a["agentId"] for a in agents) == ["node#1", "node#2"]


def test_rollback_to_the_previous_version(start_gateway, attach):
    gw = start_gateway("tcp")
    session = RpcSession.connect(gw.tcp)
    url = gw.tcp.url
    # --once: a drained agent exits instead of reconnecting (and registering its version again).
    v1 = attach(url, "--version", "1", "--once")
    id1 = v1.wait_line(r"registered as (\S+) .*active version: True").group(1)
    v2 = attach(url, "--version", "2", "--once")
    id2 = v2.wait_line(r"registered as (\S+) .*active version: True").group(1)
    assert status(session, id1)["activeVersion"] is False
    assert status(session, id2)["activeVersion"] is True

    def served_by():
        reply = call_tool(session, "moving_average", {"prices": [1, 2, 3]})
        return reply["result"]["structuredContent"]["servedBy"]

    assert {served_by() for _ in range(5)} == {"pricing v2"}

    assert session.result("agents/rollback", {"template": "pricing"}) == \
        {"template": "pricing", "from": "2", "activeVersion": "1", "draining": [id2]}
    assert {served_by() for _ in range(5)} == {"pricing v1"}

    # The newer one is drained and disconnected.
    v2.wait_line(r"session ended")
    assert v2.proc.wait(timeout=REPLY_TIMEOUT) == 0
    st2 = status(session, id2)
    assert st2["currentState"] == "OFFLINE", st2
    assert status(session, id1)["activeVersion"] is True
    assert v1.proc.poll() is None

    error_of(session.call("agents/rollback", {"template": "pricing"}), -32602)  # nothing before version 1
    error_of(session.call("agents/rollback", {"template": "nobody"}), -32602)
