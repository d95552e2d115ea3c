"""The operator commands, logs and install, against a real gateway process.

`switchboard status`, `agents`, `tasks` and `workflows` talk to a running gateway over TCP or a
Unix socket, as plain JSON-RPC; each test starts its own gateway (with `mcp-server-time` spawned
from a configuration where it needs an agent) and runs the `switchboard` binary as a person or a
script would: tables for people, `--json` for scripts, exit codes 1 (the gateway said no) and 2
(no gateway to ask). Also: `config check` on the workflow files a configuration names,
`serve --log-format json` and the text log's millisecond timestamps, and `make install`.

Waiting: the only thing waited for is a spawned agent's discovery, by polling `agents/list` with
a deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sbwire import REPO, REPLY_TIMEOUT, RpcSession

AGENT_START = 60.0
CLI_TIMEOUT = 60.0

MILLISECOND_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} (trace|debug|info|notice|warning|error|critical) ")

WORKFLOW = """\
workflowName: clock-check
version: "1.0"
description: Reads the clock, then waits for a person.
steps:
  - id: read_clock
    type: agent_task
    tool: get_current_time
    input: {timezone: UTC}
  - id: sign_off
    type: human_approval
    dependencies: [read_clock]
    message: "Is ${steps.read_clock.result.timezone} right?"
    approvers: [operator]
"""

BROKEN_WORKFLOW = """\
workflowName: broken
version: "1"
steps:
  - {id: a, type: agent_tsk}
  - {id: b, type: agent_task, tool: t, dependencies: [c]}
"""


# --------------------------------------------------------------------------- helpers


def sb(sb_bin, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(sb_bin), *args], capture_output=True, text=True, timeout=timeout)


def ok(sb_bin, *args: str) -> str:
    run = sb(sb_bin, *args)
    assert run.returncode == 0, f"switchboard {' '.join(args)} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def as_json(sb_bin, *args: str):
    return json.loads(ok(sb_bin, *args, "--json"))


def table(text: str) -> list[dict]:
    """The rows of a table printed by the CLI, as dicts keyed by its header (cells split on 2+ spaces)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    rows = []
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows.append(dict(zip(header, cells + [""] * (len(header) - len(cells)))))
    return rows


def details(text: str) -> dict:
    """The `key: value` lines of a details view (up to its first blank line)."""
    found = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        found[key.strip()] = value.strip()
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_agent(session: RpcSession, template: str) -> dict:
    """Polls agents/list until an instance of `template` has finished discovery (lists its tools)."""
    deadline = time.monotonic() + AGENT_START
    while True:
        agents = session.result("agents/list", {"template": template})["agents"]
        ready = [a for a in agents if a["tools"] and a["currentState"] == "IDLE"]
        if ready:
            return ready[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no ready {template} agent within {AGENT_START}s: {agents}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def time_server():
    path = Path(sys.executable).parent / "mcp-server-time"
    if not path.is_file():
        pytest.fail(f"mcp-server-time is not installed next to {sys.executable} (pip install -r requirements.txt)")
    return str(path)


@pytest.fixture
def fleet(start_gateway, tmp_path, time_server):
    """A gateway on TCP and a Unix socket running one `mcp-server-time` instance, ready; and a session on it."""
    config = tmp_path / "agents.json"
    config.write_text(json.dumps({"agents": {"time": {"command": time_server, "args": ["--local-timezone", "UTC"]}}}))
    gw = start_gateway("tcp", "unix", extra=["--config", str(config)])
    session = RpcSession.connect(gw.tcp)
    wait_for_agent(session, "time")
    yield gw, session
    session.close()


# --------------------------------------------------------------------------- status and agents


def test_status_summarises_the_gateway(sb_bin, fleet):
    gw, _ = fleet
    view = details(ok(sb_bin, "status", "--connect", gw.tcp.url))
    assert view["gateway"].startswith(f"switchboard 0.1.0 at {gw.tcp.url}, embedded backend"), view
    assert gw.tcp.url in view["listeners"] and gw.unix.url in view["listeners"], view
    assert view["agents"].startswith("1 (IDLE 1)"), view
    assert "queued" in view["tasks"] and "connections" in view and "limits" in view, view

    status = as_json(sb_bin, "status", "--connect", gw.unix.url)
    assert status["server"]["name"] == "switchboard"
    assert status["agents"]["count"] == 1
    assert sorted(status["listeners"]) == sorted([gw.tcp.url, gw.unix.url])


def test_agents_lists_and_shows_instances(sb_bin, fleet):
    gw, session = fleet
    rows = table(ok(sb_bin, "agents", "--connect", gw.tcp.url))
    assert list(rows[0]) == ["AGENT", "TEMPLATE", "STATE", "HEALTH", "LOAD", "LATENCY", "SUCCESS", "VERSION", "CIRCUIT"]
    assert len(rows) == 1
    agent = session.result("agents/get", {"agentId": "time#1"})
    assert rows[0]["AGENT"] == "time#1" and rows[0]["TEMPLATE"] == "time"
    assert rows[0]["STATE"] == "IDLE" and rows[0]["HEALTH"] == "HEALTHY"
    assert rows[0]["LOAD"] == f"0/{agent['maxConcurrency']}"
    assert rows[0]["VERSION"] == agent["version"] and rows[0]["CIRCUIT"] == "closed"

    view = details(ok(sb_bin, "agents", "time#1", "--connect", gw.unix.url))
    assert view["agent"] == "time#1" and view["template"] == "time" and view["kind"].startswith("spawned")
    assert "get_current_time" in view["tools"] and view["command"].endswith("mcp-server-time --local-timezone UTC")
    assert view["process"] == str(agent["processId"])

    listed = as_json(sb_bin, "agents", "--connect", gw.tcp.url)
    assert [a["agentId"] for a in listed["agents"]] == ["time#1"]
    one = as_json(sb_bin, "agents", "time#1", "--connect", gw.tcp.url)
    assert one["agentId"] == "time#1" and "get_current_time" in one["tools"]


def test_agent_filters_go_to_the_gateway(sb_bin, fleet):
    gw, _ = fleet
    assert ok(sb_bin, "agents", "--template", "nosuch", "--connect", gw.tcp.url).strip() == "no agents"
    assert table(ok(sb_bin, "agents", "--state", "idle", "--template", "time", "--connect", gw.tcp.url))[0]["AGENT"] == "time#1"
    refused = sb(sb_bin, "agents", "--state", "SLEEPING", "--connect", gw.tcp.url)
    assert refused.returncode == 1, refused
    assert 'unknown state "SLEEPING"' in refused.stderr and refused.stdout == ""


def test_a_json_rpc_error_is_printed_with_exit_code_1(sb_bin, fleet):
    gw, _ = fleet
    run = sb(sb_bin, "agents", "time#9", "--connect", gw.tcp.url)
    assert run.returncode == 1, run
    assert 'no agent "time#9"' in run.stderr and "(-32602)" in run.stderr
    run = sb(sb_bin, "tasks", "task-404", "--connect", gw.tcp.url, "--json")
    assert run.returncode == 1 and 'no task "task-404"' in run.stderr and run.stdout == "", run


# --------------------------------------------------------------------------- tasks


def test_tasks_lists_and_shows_submitted_tasks(sb_bin, fleet):
    gw, session = fleet
    done = session.result("tasks/submit", {"taskType": "get_current_time", "taskData": {"timezone": "UTC"}, "priority": 2})
    session.result("tasks/result", {"taskId": done["taskId"]})
    failed = session.result("tasks/submit", {"taskType": "no_such_tool", "maxRetries": 0})
    assert session.call("tasks/result", {"taskId": failed["taskId"]})["error"]["code"] == -32014

    rows = {row["TASK"]: row for row in table(ok(sb_bin, "tasks", "--connect", gw.tcp.url))}
    assert list(next(iter(rows.values()))) == ["TASK", "TOOL", "STATE", "PRIO", "AGENT", "ATTEMPTS", "AGE", "DURATION", "ERROR"]
    row = rows[done["taskId"]]
    assert (row["TOOL"], row["STATE"], row["PRIO"], row["AGENT"], row["ATTEMPTS"]) == ("get_current_time", "COMPLETED", "2", "time#1", "1/4")
    assert re.fullmatch(r"\d+ms|\d+(\.\d)?s", row["DURATION"]), row
    row = rows[failed["taskId"]]
    assert (row["TOOL"], row["STATE"], row["AGENT"]) == ("no_such_tool", "FAILED", "-")
    assert row["ERROR"], row

    only = table(ok(sb_bin, "tasks", "--state", "completed", "--tool", "get_current_time", "--connect", gw.unix.url))
    assert [r["TASK"] for r in only] == [done["taskId"]]
    assert ok(sb_bin, "tasks", "--tool", "nothing", "--connect", gw.tcp.url).strip() == "no tasks"

    view = ok(sb_bin, "tasks", done["taskId"], "--connect", gw.tcp.url)
    fields = details(view)
    assert fields["task"] == done["taskId"] and fields["tool"] == "get_current_time"
    assert fields["state"] == "COMPLETED (MCP status completed)" and fields["agent"] == "time#1"
    assert "UTC" in fields["result"], fields
    attempts = table(view.split("attempts:\n", 1)[1])
    assert len(attempts) == 1 and attempts[0]["AGENT"] == "time#1"

    listed = as_json(sb_bin, "tasks", "--connect", gw.tcp.url)
    assert {t["taskId"]: t["state"] for t in listed["tasks"]} == {done["taskId"]: "COMPLETED", failed["taskId"]: "FAILED"}
    one = as_json(sb_bin, "tasks", failed["taskId"], "--connect", gw.tcp.url)
    assert one["state"] == "FAILED" and one["errorMessage"]


# --------------------------------------------------------------------------- workflows


def test_workflows_lists_definitions_and_shows_an_execution(sb_bin, fleet):
    gw, session = fleet
    assert ok(sb_bin, "workflows", "--connect", gw.tcp.url).strip() == "no workflows"
    session.result("workflows/create", {"source": WORKFLOW, "createdBy": "ops"})

    rows = table(ok(sb_bin, "workflows", "--connect", gw.tcp.url))
    assert len(rows) == 1
    assert (rows[0]["WORKFLOW"], rows[0]["LATEST"], rows[0]["VERSIONS"], rows[0]["STEPS"]) == ("clock-check", "1.0", "1.0", "2")

    view = ok(sb_bin, "workflows", "clock-check", "--connect", gw.tcp.url)
    fields = details(view)
    assert fields["workflow"] == "clock-check" and fields["version"] == "1.0" and fields["created"].endswith("by ops")
    steps = table(view.split("\n\n", 1)[1])
    assert [(s["STEP"], s["TYPE"]) for s in steps] == [("read_clock", "agent_task"), ("sign_off", "human_approval")]

    execution = session.result("workflows/execute", {"workflowName": "clock-check"})["executionId"]
    deadline = time.monotonic() + REPLY_TIMEOUT
    while session.result("workflows/status", {"executionId": execution})["status"] != "WAITING_APPROVAL":
        assert time.monotonic() < deadline, "the execution never reached its approval step"
        time.sleep(0.05)

    view = ok(sb_bin, "workflows", execution, "--connect", gw.unix.url)
    fields = details(view)
    assert fields["execution"] == execution and fields["workflow"] == "clock-check 1.0"
    assert fields["status"] == "WAITING_APPROVAL" and fields["current steps"] == "sign_off"
    assert fields["progress"] == "1 of 2 steps" and fields["awaits approval"].startswith("sign_off: Is UTC right?")
    steps = {s["STEP"]: s for s in table(view.split("\n\n", 1)[1])}
    assert steps["read_clock"]["STATUS"] == "COMPLETED" and steps["sign_off"]["STATUS"] == "WAITING_APPROVAL"

    assert as_json(sb_bin, "workflows", "--connect", gw.tcp.url)["workflows"][0]["workflowName"] == "clock-check"
    assert as_json(sb_bin, "workflows", "clock-check", "--connect", gw.tcp.url)["stepCount"] == 2
    status = as_json(sb_bin, "workflows", execution, "--connect", gw.tcp.url)
    assert status["executionId"] == execution and status["currentSteps"] == ["sign_off"]

    missing = sb(sb_bin, "workflows", "nope", "--connect", gw.tcp.url)
    assert missing.returncode == 1 and 'no workflow and no workflow execution "nope"' in missing.stderr, missing


# --------------------------------------------------------------------------- no gateway


def test_connection_refused_exits_2_with_a_hint(sb_bin):
    url = f"tcp://127.0.0.1:{free_port()}"
    run = sb(sb_bin, "status", "--connect", url)
    assert run.returncode == 2, run
    assert f"cannot connect to {url}: connection refused — is the gateway running? (start it with `switchboard serve" in run.stderr
    assert run.stdout == ""


def test_a_missing_unix_socket_exits_2(sb_bin, sockdir):
    run = sb(sb_bin, "agents", "--connect", f"unix://{sockdir}/none.sock")
    assert run.returncode == 2, run
    assert f"cannot connect to unix://{sockdir}/none.sock: no such file or directory" in run.stderr


def test_a_gateway_that_never_answers_times_out(sb_bin):
    with socket.socket() as silent:  # accepts connections (the backlog) and never reads them
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        run = sb(sb_bin, "tasks", "--connect", url, "--timeout", "0.5")
        assert time.monotonic() - started < 10
    assert run.returncode == 2, run
    assert f"no answer from {url} within 0.5 s" in run.stderr


def test_a_bad_connect_address_is_a_usage_error(sb_bin):
    run = sb(sb_bin, "status", "--connect", "ftp://127.0.0.1:7400")
    assert run.returncode == 64, run
    assert 'unsupported scheme "ftp"' in run.stderr
    # An HTTP listener is the gateway's, but the operator commands speak JSON-RPC lines.
    http = sb(sb_bin, "status", "--connect", "http://127.0.0.1:7400")
    assert http.returncode == 64, http
    assert "tcp://, tls:// or unix://" in http.stderr


# --------------------------------------------------------------------------- TLS


def openssl(*args) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))} failed:\n{done.stderr}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A throw-away CA (ca.pem) with a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is not installed (Debian package: openssl)")
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", d / "ca.key",
            "-out", d / "ca.pem", "-days", "2", "-subj", "/CN=Operator CLI Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, usage, sans in [("server", "serverAuth", "IP:127.0.0.1"), ("client", "clientAuth", None)]:
        (d / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n" + (f"subjectAltName={sans}\n" if sans else ""))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", d / f"{name}.key",
                "-out", d / f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", d / f"{name}.ext", "-out", d / f"{name}.pem")
    return d


def tls_url(gw) -> str:
    line = gw.wait_log(r"listening on tls://")
    return re.search(r"tls://[\d.]+:\d+", line).group(0)


def test_tls_with_a_client_certificate(sb_bin, start_gateway, pki):
    gw = start_gateway("tcp", extra=["--listen", "tls://127.0.0.1:0", "--tls-cert", str(pki / "server.pem"), "--tls-key",
                                     str(pki / "server.key"), "--tls-ca", str(pki / "ca.pem"), "--tls-client-auth", "require"])
    url = tls_url(gw)
    client = ["--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]
    view = details(ok(sb_bin, "status", "--connect", url, *client))
    assert view["gateway"].startswith(f"switchboard 0.1.0 at {url}"), view
    assert as_json(sb_bin, "agents", "--connect", url, *client) == {"agents": []}

    # Without a certificate the gateway refuses the handshake; with the system's trust store the
    # client refuses the gateway's: no answer, exit 2.
    for args in (["--tls-ca", str(pki / "ca.pem")], client[2:]):
        run = sb(sb_bin, "status", "--connect", url, *args)
        assert run.returncode == 2, run
        assert url in run.stderr and run.stdout == "", run


# --------------------------------------------------------------------------- config check


def test_config_check_checks_the_workflow_files_it_names(sb_bin, tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "good.yaml").write_text(WORKFLOW)
    (tmp_path / "flows" / "broken.yaml").write_text(BROKEN_WORKFLOW)

    def check(*files: str) -> subprocess.CompletedProcess:
        config = tmp_path / "gateway.yaml"
        config.write_text("listen: [tcp://127.0.0.1:0]\nworkflows:\n  definitions: [" + ", ".join(files) + "]\n")
        return sb(sb_bin, "config", "check", str(config))

    good = check("flows/good.yaml")
    assert good.returncode == 0, good
    assert "1 workflow definitions" in good.stdout
    assert f"{tmp_path}/flows/good.yaml: workflow clock-check version 1.0 is valid: 2 steps" in good.stdout

    missing = check("flows/good.yaml", "flows/missing.yaml")
    assert missing.returncode == 1, missing
    assert f"{tmp_path}/flows/missing.yaml: error: cannot read the file" in missing.stderr

    broken = check("flows/broken.yaml", "flows/good.yaml")
    assert broken.returncode == 1, broken
    assert f"{tmp_path}/flows/broken.yaml:4:19: error: unknown step type" in broken.stderr
    assert f"{tmp_path}/flows/broken.yaml:5:" in broken.stderr
    assert "1 of 2 workflow definition files have problems" in broken.stderr


# --------------------------------------------------------------------------- logs


def test_json_logs_are_one_object_per_line(start_gateway, tmp_path, time_server):
    # The agent's first stderr line is logged under its name: quotes, a backslash, a tab, a control
    # character and non-ASCII text must survive as JSON.
    noisy = 'printf \'said "hi" back\\\\slash\\ttab \\001 caf\\303\\251\\n\' >&2; exec "$0" "$@"'
    config = tmp_path / "agents.json"
    config.write_text(json.dumps({"agents": {"noisy": {"command": "sh", "args": ["-c", noisy, time_server]}}}))
    gw = start_gateway("tcp", extra=["--config", str(config), "--log-format", "json"])
    gw.wait_log(r"said")
    session = RpcSession.connect(gw.tcp)
    wait_for_agent(session, "noisy")
    session.close()
    assert gw.stop() == 0

    records = []
    for line in gw.stderr_lines:
        record = json.loads(line)  # every line, the shutdown's included
        assert MILLISECOND_UTC.match(record["ts"]), record
        assert record["level"] in ("trace", "debug", "info", "notice", "warning", "error", "critical")
        assert isinstance(record["label"], str) and isinstance(record["message"], str)
        records.append(record)
    assert any(r["message"] == f"listening on {gw.tcp.url}" and r["label"] == "switchboard" for r in records), records
    said = [r for r in records if "said" in r["message"]]
    assert said and said[0]["message"] == 'said "hi" back\\slash\ttab \x01 café', said
    assert said[0]["agent"] == "noisy#1", said


def test_text_logs_have_millisecond_timestamps(gateway_tcp):
    line = gateway_tcp.wait_log("listening on")
    assert TEXT_LOG_LINE.match(line), line
    assert f"info switchboard: [Gateway] listening on {gateway_tcp.tcp.url}" in line


# --------------------------------------------------------------------------- install


def test_make_install_and_uninstall(tmp_path):
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed")
    stage = tmp_path / "stage"
    common = ["-C", str(REPO), "PREFIX=/opt/sb", f"DESTDIR={stage}", "CONFIGURATION=debug"]
    # A debug build: the same steps as the release default, without minutes of optimising.
    install = subprocess.run([make, "install", *common], capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stdout + install.stderr
    installed = stage / "opt" / "sb" / "bin" / "switchboard"
    assert installed.is_file() and os.access(installed, os.X_OK)
    version = subprocess.run([str(installed), "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.strip() == "0.1.0", version

    uninstall = subprocess.run([make, "uninstall", *common], capture_output=True, text=True, timeout=60)
    assert uninstall.returncode == 0, uninstall.stdout + uninstall.stderr
    assert not installed.exists()


# --------------------------------------------------------------------------- fleet and reload
#
# A gateway whose one spawned template, `worker` (stdio_tool_server.py), is autoscaled between 1
# and 2 instances and asks for 64Mi of memory, so that each instance holds a grant and its rows.
# The test machine runs as root with writable control groups: a gateway without them fails the
# test, it does not skip it.

TOOL_SERVER = Path(__file__).resolve().parent / "agents" / "stdio_tool_server.py"
FAST_ROLLOUT = {"maxSurge": 1, "maxUnavailable": 0, "stepSeconds": 0.2, "canaryShare": 0, "minimumCalls": 5, "readyTimeoutSeconds": 20}
MIB = 1024 * 1024


def worker(label: str = "one", **extra) -> dict:
    return {
        "command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "work", "--label", label],
        "resources": {"memory": "64Mi"},
        "autoscale": {"min": 1, "max": 2, "scaleDownAfterSeconds": 0.5, "cooldownSeconds": 0},
        "rollout": FAST_ROLLOUT, **extra,
    }


def write_fleet(path: Path, agents: dict) -> None:
    path.write_text(json.dumps({"fleet": {"autoscaleIntervalSeconds": 0.2}, "agents": agents}, indent=2))


def poll(fetch, check, what: str):
    deadline = time.monotonic() + AGENT_START
    while True:
        value = fetch()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so within {AGENT_START}s; last: {json.dumps(value)[:2000]}")
        time.sleep(0.05)


def section(text: str, title: str) -> str:
    """The block of a view that follows the line `title:`, up to the next blank line."""
    return text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]


@pytest.fixture
def fleet_gateway(start_gateway, tmp_path):
    """fleet_gateway(**agents) -> (a gateway on TCP with those agent templates, a session, its config file)."""
    sessions = []

    def start(**agents):
        path = tmp_path / "fleet.json"
        write_fleet(path, agents)
        gw = start_gateway("tcp", extra=["--config", str(path)])
        session = RpcSession.connect(gw.tcp)
        sessions.append(session)
        limits = session.result("fleet/status")["enforcement"]["limits"]
        if not limits.startswith("cgroups"):
            pytest.fail(f"these tests need a gateway run as root with writable control groups; this one holds limits by {limits!r}")
        for name in agents:
            wait_for_agent(session, name)
        return gw, session, path

    yield start
    for session in sessions:
        session.close()


def test_fleet_summarises_capacity_templates_and_grants(sb_bin, fleet_gateway):
    gw, session, _ = fleet_gateway(worker=worker())
    poll(lambda: session.result("fleet/status")["templates"][0]["autoscale"], lambda a: "desired" in a, "the autoscaler's first look")
    capacity = session.result("fleet/status")["capacity"]

    view = ok(sb_bin, "fleet", "--connect", gw.tcp.url)
    fields = details(view)
    assert re.fullmatch(rf"0 of {capacity['cpu']:g} cores allocated", fields["cpu"]), fields
    assert re.fullmatch(r"64Mi of \d+(\.\d+)?Gi allocated", fields["memory"]), fields
    assert fields["gpus"].startswith("none"), fields
    assert fields["cost"] == "0 per hour (no prices set: fleet.prices)", fields
    assert fields["limits held by"].startswith("cgroups v"), fields
    assert fields["sandboxes built by"], fields

    templates = table(section(view, "templates"))
    assert templates == [{"TEMPLATE": "worker", "INSTANCES": "1", "AUTOSCALE": "1–2, desired 1", "RESOURCES": "memory 64Mi",
                          "PRIORITY": "normal", "COST/H": "0"}], view
    grants = table(section(view, "grants"))
    assert [(g["AGENT"], g["TEMPLATE"], g["CPU"], g["MEMORY"], g["GPUS"], g["PRIORITY"]) for g in grants] == [
        ("worker#1", "worker", "-", "64Mi", "-", "normal")], view

    # `fleet` is `fleet status`; --json is the method's result.
    assert details(ok(sb_bin, "fleet", "status", "--connect", gw.tcp.url)) == fields
    status = as_json(sb_bin, "fleet", "--connect", gw.tcp.url)
    assert status["templates"][0]["resources"] == {"memoryBytes": 64 * MIB}
    assert [g["agentId"] for g in status["grants"]] == ["worker#1"]


def test_fleet_decisions_show_each_decision_with_its_reason_below(sb_bin, fleet_gateway):
    gw, session, _ = fleet_gateway(worker=worker(instances=2))
    # Two instances and no demand: after scaleDownAfterSeconds the autoscaler goes back to min.
    decided = poll(lambda: session.result("fleet/decisions", {"template": "worker"})["decisions"],
                   lambda d: any(x["kind"] == "scaleDown" for x in d), "a scale-down decision")
    down = next(d for d in decided if d["kind"] == "scaleDown")

    lines = ok(sb_bin, "fleet", "decisions", "--template", "worker", "--connect", gw.tcp.url).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["TIME", "TEMPLATE", "KIND", "CHANGE", "OUTCOME"], lines
    rows = [(n, re.split(r"\s{2,}", line)) for n, line in enumerate(lines) if not line.startswith(" ")][1:]
    n, row = next((n, row) for n, row in rows if row[2] == "scaleDown")
    assert row == [down["at"], "worker", "scaleDown", "2 → 1", "applied"], lines
    assert lines[n + 1] == f"    {down['reason']}", lines

    one = ok(sb_bin, "fleet", "decisions", "--limit", "1", "--connect", gw.tcp.url).splitlines()
    assert len([line for line in one[1:] if not line.startswith(" ")]) == 1, one
    assert ok(sb_bin, "fleet", "decisions", "--template", "nosuch", "--connect", gw.tcp.url).strip() == "no decisions"
    refused = sb(sb_bin, "fleet", "decisions", "--limit", "0", "--connect", gw.tcp.url)
    assert refused.returncode == 1 and '"limit" must be an integer from 1 to 1000' in refused.stderr and refused.stdout == "", refused


def test_fleet_allocations_lists_each_grants_rows(sb_bin, fleet_gateway):
    gw, session, _ = fleet_gateway(worker=worker())
    rows = table(ok(sb_bin, "fleet", "allocations", "--connect", gw.tcp.url))
    assert list(rows[0]) == ["ID", "AGENT", "TEMPLATE", "RESOURCE", "AMOUNT", "COST/H", "USE", "AGE", "RELEASED"]
    assert [(r["AGENT"], r["TEMPLATE"], r["RESOURCE"], r["AMOUNT"], r["RELEASED"]) for r in rows] == [
        ("worker#1", "worker", "memory", "64Mi", "-")], rows

    # A resize releases the row and begins another; --released shows both.
    session.result("agents/resize", {"template": "worker", "resources": {"memory": "96Mi"}})
    assert [r["AMOUNT"] for r in table(ok(sb_bin, "fleet", "allocations", "--template", "worker", "--connect", gw.tcp.url))] == ["96Mi"]
    both = table(ok(sb_bin, "fleet", "allocations", "--released", "--connect", gw.tcp.url))
    assert [(r["AMOUNT"], r["RELEASED"] == "-") for r in both] == [("96Mi", True), ("64Mi", False)], both
    assert both[1]["RELEASED"].endswith(" ago"), both
    assert ok(sb_bin, "fleet", "allocations", "--template", "nosuch", "--connect", gw.tcp.url).strip() == "no allocations"


def test_fleet_resize_changes_concurrency_and_keeps_the_resources_not_given(sb_bin, fleet_gateway):
    gw, session, _ = fleet_gateway(worker=worker())
    fields = details(ok(sb_bin, "fleet", "resize", "worker", "--max-concurrency", "3", "--connect", gw.tcp.url))
    assert fields == {"template": "worker", "max concurrency": "3", "resources": "memory 64Mi", "instances": "worker#1",
                      "limits": "applied live"}, fields
    assert session.result("agents/get", {"agentId": "worker#1"})["maxConcurrency"] == 3

    # A resource given changes; the others stay, unless --replace.
    assert details(ok(sb_bin, "fleet", "resize", "worker", "--processes", "64", "--connect", gw.tcp.url))["resources"] == "memory 64Mi, processes 64"
    replaced = as_json(sb_bin, "fleet", "resize", "worker", "--processes", "32", "--replace", "--connect", gw.tcp.url)
    assert replaced["resources"] == {"processes": 32} and replaced["maxConcurrency"] == 3, replaced

    nothing = sb(sb_bin, "fleet", "resize", "worker", "--connect", gw.tcp.url)
    assert nothing.returncode == 64 and "give at least one of --max-concurrency, --cpu, --memory and --processes" in nothing.stderr, nothing
    unknown = sb(sb_bin, "fleet", "resize", "nosuch", "--max-concurrency", "2", "--connect", gw.tcp.url)
    assert unknown.returncode == 1 and 'no agent template "nosuch" in the configuration' in unknown.stderr, unknown


def test_reload_starts_a_template_added_to_the_configuration(sb_bin, fleet_gateway):
    gw, session, path = fleet_gateway(worker=worker())
    extra = {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", "extra_work"]}
    write_fleet(path, {"worker": worker(), "extra": extra})
    fields = details(ok(sb_bin, "reload", "--connect", gw.tcp.url))
    assert fields == {"added": "extra", "removed": "none", "rolling out": "none", "changed in place": "none", "unchanged": "worker"}, fields
    wait_for_agent(session, "extra")

    write_fleet(path, {"worker": worker()})
    assert as_json(sb_bin, "reload", "--connect", gw.tcp.url) == {"added": [], "removed": ["extra"], "rolling": [], "resized": [], "unchanged": ["worker"], "deferred": []}


def test_fleet_rollouts_show_a_reload_rolling_a_template_out(sb_bin, fleet_gateway):
    gw, session, path = fleet_gateway(worker=worker("one"))
    assert ok(sb_bin, "fleet", "rollouts", "--connect", gw.tcp.url).strip() == "no rollouts"
    write_fleet(path, {"worker": worker("two")})
    fields = details(ok(sb_bin, "reload", "--connect", gw.tcp.url))
    assert fields["rolling out"] == "worker" and fields["unchanged"] == "none", fields
    done = poll(lambda: session.result("fleet/rollouts", {"template": "worker"})["rollouts"],
                lambda r: r and r[0]["outcome"] != "rolling", "the rollout over")[0]
    assert done["outcome"] == "completed" and done["steps"], done

    view = ok(sb_bin, "fleet", "rollouts", "--template", "worker", "--connect", gw.tcp.url)
    head, *rest = view.splitlines()
    assert head == f"worker {done['from']} → {done['to']}: completed", view
    assert rest[0].startswith(f"  started: {done['startedAt']} (") and rest[1].startswith(f"  ended:   {done['endedAt']}, after "), view
    assert rest[2] == "  steps:" and rest[3:] == [f"    {step}" for step in done["steps"]], view
    assert ok(sb_bin, "fleet", "rollouts", "--template", "other", "--connect", gw.tcp.url).strip() == "no rollouts"
