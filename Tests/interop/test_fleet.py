"""The fleet: resources, limits, sandboxes, GPUs and autoscaling, with real agent processes.

Every agent is `agents/fleet_agent.py` run by /usr/bin/python3 (some as `nobody` in a sandbox
whose /tmp is private), driven over the gateway's TCP listener as a client would:

- a queue of tasks grows a template to its `autoscale.max` (never beyond) and idleness shrinks
  it back to its `min`, each step in `fleet/decisions`;
- a template whose `min` is 0 goes dormant, keeps its tools listed, and a call cold-starts it;
- an instance over its memory limit is killed by the control group, says so in `lastError`,
  and comes back;
- a sandboxed agent runs as `nobody`, without the gateway's secrets, writes only where it may,
  and reaches no network;
- a GPU pool of two never gives one GPU to two instances, and refuses a third;
- requests that could never fit are refused at once (a registration, a configuration);
- `agents/resize` changes concurrency and limits of running instances;
- a sandbox that cannot be built refuses the start.

The CI machine runs as root with writable cgroups v1 and bubblewrap: a test that finds them
missing fails saying so, it does not skip.

Waiting: a reply is awaited; states that nothing announces (instances, decisions) are polled
with a deadline.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from sbwire import RpcSession

FLEET_AGENT = Path(__file__).resolve().parent / "agents" / "fleet_agent.py"
# Absolute: the venv's python lives under a 0700 path in CI, which `nobody` cannot enter.
PYTHON = "/usr/bin/python3"
SECRET = "SWITCHBOARD_TEST_SECRET"
MIB = 1024 * 1024
# Up and serving; an instance whose every slot is taken (maxConcurrency 1, one call) is OVERLOADED.
RUNNING = {"IDLE", "BUSY", "OVERLOADED"}
# A small, fast autoscaler so that each test stays within seconds.
FAST_FLEET = {"autoscaleIntervalSeconds": 0.2}
WAIT = 30.0


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def agent_script():
    """fleet_agent.py copied into a fresh world-readable directory under /var/tmp.

    Sandboxed agents run as `nobody` with a private /tmp, and pytest's tmp dirs are 0700: the
    script must be somewhere `nobody` can read that is not /tmp.
    """
    directory = tempfile.mkdtemp(prefix="sb-fleet-", dir="/var/tmp")
    os.chmod(directory, 0o755)
    script = Path(directory) / "fleet_agent.py"
    shutil.copyfile(FLEET_AGENT, script)
    os.chmod(script, 0o644)
    yield script
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shared_dir():
    """A directory under /var/tmp that `nobody` may write to (gates, a sandbox's writable path)."""
    directory = tempfile.mkdtemp(prefix="sb-fleet-rw-", dir="/var/tmp")
    os.chmod(directory, 0o777)
    yield Path(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def gateway(start_gateway, tmp_path):
    """gateway(config dict, env=None) -> (a gateway on TCP started with --config, a session on it)."""
    sessions = []

    def start(config: dict, env: dict | None = None):
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps(config, indent=2))
        gw = start_gateway("tcp", extra=["--config", str(path)], env=env)
        session = RpcSession.connect(gw.tcp)
        sessions.append(session)
        return gw, session

    yield start
    for session in sessions:
        session.close()


def template(script: Path, **extra) -> dict:
    return {"command": PYTHON, "args": [str(script)], **extra}


def poll(fetch, check, what: str, timeout: float = WAIT, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so within {timeout}s; last: {json.dumps(value)[:3000]}")
        time.sleep(interval)


def agents_of(session: RpcSession, name: str) -> list:
    return session.result("agents/list", {"template": name})["agents"]


def running(n: int):
    return lambda agents: len(agents) == n and all(a["currentState"] in RUNNING and "processId" in a for a in agents)


def fleet_status(session: RpcSession) -> dict:
    return session.result("fleet/status")


def template_status(session: RpcSession, name: str) -> dict:
    templates = fleet_status(session)["templates"]
    found = [t for t in templates if t["template"] == name]
    assert len(found) == 1, f"fleet/status lists template {name!r} {len(found)} times: {templates}"
    return found[0]


def decisions(session: RpcSession, name: str, kind: str | None = None) -> list:
    listed = session.result("fleet/decisions", {"template": name})["decisions"]
    assert all(d["template"] == name for d in listed), f"fleet/decisions filtered by {name!r} gave others: {listed}"
    return [d for d in listed if kind is None or d["kind"] == kind]


def text_of(reply: dict) -> str:
    assert "result" in reply, f"the call failed: {reply}"
    result = reply["result"]
    assert not result.get("isError"), f"the tool failed: {result}"
    return result["content"][0]["text"]


def call_tool(session: RpcSession, name: str, arguments: dict, timeout: float = WAIT) -> str:
    return text_of(session.call("tools/call", {"name": name, "arguments": arguments}, timeout))


def pid_of(answer: str) -> int:
    match = re.fullmatch(r"ok:(\d+)(?::\S+)?", answer)
    assert match, f"work answered {answer!r}, not ok:<pid>"
    return int(match.group(1))


def require_cgroups(session: RpcSession) -> None:
    limits = fleet_status(session)["enforcement"]["limits"]
    if not str(limits).startswith("cgroups"):
        pytest.fail(f"resource limits are enforced with {limits!r} here, not cgroups: this test needs a machine "
                    "where the gateway runs as root with writable control groups (as CI does)")


# --------------------------------------------------------------------------- autoscaling


def test_a_queue_grows_a_template_to_its_max_and_idleness_shrinks_it_to_its_min(gateway, agent_script, shared_dir):
    autoscale = {"min": 1, "max": 3, "targetUtilization": 1.0, "scaleUpAfterSeconds": 0.5,
                 "scaleDownAfterSeconds": 1, "cooldownSeconds": 0.2, "predictive": False}
    gw, session = gateway({"fleet": FAST_FLEET, "agents": {"worker": template(
        agent_script, instances=1, maxConcurrency=1, priorityClass="high", autoscale=autoscale)}})
    poll(lambda: agents_of(session, "worker"), running(1), "the first instance running")
    assert template_status(session, "worker")["priorityClass"] == "high"

    gate = shared_dir / "gate"
    submitted = [session.result("tasks/submit", {"taskType": "work", "taskData": {"gate": str(gate)}, "timeout": 60})
                 for _ in range(6)]
    task_ids = [task["taskId"] for task in submitted]

    # Six tasks, one slot per instance: the queue keeps asking for more than the max. Every poll
    # checks the bound, while it grows and for a while after (several autoscaler rounds beyond
    # scaleUpAfterSeconds + cooldown, with three tasks still waiting), since a fourth instance
    # would only show up then.
    def bounded():
        listed, status = agents_of(session, "worker"), template_status(session, "worker")
        assert status["instances"] <= 3, f"more instances than autoscale.max: {status}"
        assert len(listed) <= 3, f"more instances than autoscale.max: {[a['agentId'] for a in listed]}"
        return listed

    poll(bounded, running(3), "three instances running for the queue")
    settle = time.monotonic() + 1.5
    while time.monotonic() < settle:
        bounded()
        time.sleep(0.1)

    ups = decisions(session, "worker", "scaleUp")
    assert ups, f"no scaleUp decision: {decisions(session, 'worker')}"
    assert all(d["to"] <= 3 and d["to"] > d["from"] for d in ups), ups
    assert max(d["to"] for d in ups) == 3, ups
    assert any(re.search(r"wait|queue|pending|backlog", d["reason"], re.I) for d in ups), \
        f"no scaleUp says it was for waiting work: {[d['reason'] for d in ups]}"

    gate.touch()
    waiting = [session.request("tasks/result", {"taskId": task_id}) for task_id in task_ids]
    for request_id in waiting:
        pid_of(text_of(session.reply(request_id, WAIT)))
    ended = [session.result("tasks/get", {"taskId": t}) for t in task_ids]
    assert [task["state"] for task in ended] == ["COMPLETED"] * 6, ended
    # The work was spread over the three instances the queue called for.
    ran_on = {task["attempts"][-1]["agentId"] for task in ended}
    assert ran_on == {"worker#1", "worker#2", "worker#3"}, ran_on

    poll(lambda: template_status(session, "worker"), lambda t: t["instances"] == 1, "back to autoscale.min once idle")
    downs = decisions(session, "worker", "scaleDown")
    assert downs, f"no scaleDown decision: {decisions(session, 'worker')}"
    assert all(d["to"] >= 1 and d["to"] < d["from"] for d in downs), f"scaled below autoscale.min: {downs}"
    assert not decisions(session, "worker", "predictive"), "predictive decisions with predictive: false"
    assert call_tool(session, "work", {}).startswith("ok:")


def test_a_template_scaled_to_zero_stays_listed_and_a_call_cold_starts_it(gateway, agent_script):
    autoscale = {"min": 0, "max": 2, "targetUtilization": 1.0, "scaleUpAfterSeconds": 0.5,
                 "scaleDownAfterSeconds": 1, "cooldownSeconds": 0.2, "predictive": False}
    gw, session = gateway({"fleet": FAST_FLEET, "agents": {"sleeper": template(
        agent_script, instances=1, maxConcurrency=1, autoscale=autoscale)}})
    poll(lambda: agents_of(session, "sleeper"), running(1), "the instance running")

    poll(lambda: template_status(session, "sleeper"), lambda t: t["dormant"] is True and t["instances"] == 0,
         "the idle template dormant")
    [entry] = agents_of(session, "sleeper")
    assert entry["currentState"] == "OFFLINE" and entry.get("dormant") is True, entry
    assert decisions(session, "sleeper", "scaleDown"), decisions(session, "sleeper")

    # A host connecting now lists tools once and never waits for a notification: the dormant
    # template's tools must be there.
    with RpcSession.connect(gw.tcp) as host:
        names = [tool["name"] for tool in host.result("tools/list")["tools"]]
        assert "work" in names, names
        answer = call_tool(host, "work", {}, timeout=60)  # waits for the cold start
    pid_of(answer)
    starts = decisions(session, "sleeper", "coldStart")
    assert starts and all(d["from"] == 0 and d["to"] >= 1 for d in starts), decisions(session, "sleeper")


# --------------------------------------------------------------------------- limits


def test_an_instance_over_its_memory_limit_is_killed_says_why_and_comes_back(gateway, agent_script):
    gw, session = gateway({"agents": {"hog": template(agent_script, resources={"memory": "64Mi"})}})
    require_cgroups(session)
    [entry] = poll(lambda: agents_of(session, "hog"), running(1), "the instance running")
    before = entry["processId"]
    pid_of(call_tool(session, "work", {}))

    reply = session.call("tools/call", {"name": "allocate", "arguments": {"mib": 256}}, WAIT)
    assert "error" in reply or reply["result"].get("isError"), f"256 MiB allocated under a 64 MiB limit: {reply}"

    poll(lambda: agents_of(session, "hog"),
         lambda agents: len(agents) == 1 and re.search(r"memory limit", agents[0].get("lastError") or "", re.I),
         "lastError naming the memory limit")
    # It comes back (a new process) and keeps the reason of its last failure.
    poll(lambda: agents_of(session, "hog"),
         lambda agents: running(1)(agents) and agents[0]["processId"] != before, "the instance restarted")
    pid_of(call_tool(session, "work", {}))
    [entry] = agents_of(session, "hog")
    assert re.search(r"memory limit", entry.get("lastError") or "", re.I), entry


# --------------------------------------------------------------------------- sandbox


def test_a_sandboxed_agent_is_nobody_without_secrets_writes_only_where_allowed_and_has_no_network(
        gateway, agent_script, shared_dir):
    sandbox = {"user": "nobody", "network": "none", "readOnlyPaths": ["/"], "writablePaths": [str(shared_dir)],
               "privateTmp": True}
    env = {**os.environ, SECRET: "s3cret"}
    gw, session = gateway({"agents": {"jail": template(agent_script, sandbox=sandbox)}}, env=env)
    poll(lambda: agents_of(session, "jail"), running(1), "the sandboxed instance running")

    allowed = shared_dir / "ok"
    outside = Path(f"/var/tmp/outside-{uuid.uuid4().hex}")
    in_etc = Path(f"/etc/sb-test-{uuid.uuid4().hex}")
    host, port = gw.tcp.address
    try:
        seen = json.loads(call_tool(session, "probe", {"write": [str(allowed), str(outside), str(in_etc)],
                                                        "connect": [host, port]}))
        assert seen["uid"] == pwd.getpwnam("nobody").pw_uid, seen["uid"]
        assert SECRET not in seen["environ"], sorted(seen["environ"])
        assert not any("s3cret" in value for value in seen["environ"].values()), seen["environ"]

        assert seen["writes"][str(allowed)] == "ok", seen["writes"]
        assert allowed.read_text() == "x"
        # Without the read-only view, nobody could write /var/tmp (mode 1777) and would be refused
        # /etc for permissions only: "Read-only file system" for both is the sandbox's doing.
        for path in (outside, in_etc):
            assert "Read-only file system" in seen["writes"][str(path)], seen["writes"]
            assert not path.exists(), f"{path} was written on the host"
        assert seen["connect"] != "ok", f"the agent reached the gateway at {host}:{port} with network: none"
    finally:
        for path in (outside, in_etc):
            path.unlink(missing_ok=True)

    [entry] = agents_of(session, "jail")
    assert any("bubblewrap" in measure.lower() for measure in entry["isolation"]), entry.get("isolation")


def test_a_sandbox_that_cannot_be_built_refuses_the_start(gateway, agent_script):
    missing = "/nonexistent/sb-test"
    assert not os.path.exists(missing)
    sandbox = {"user": "nobody", "network": "none", "readOnlyPaths": ["/"], "writablePaths": [missing], "privateTmp": True}
    gw, session = gateway({"agents": {"walled": template(agent_script, sandbox=sandbox)}})
    [entry] = poll(lambda: agents_of(session, "walled"),
                   lambda agents: len(agents) == 1 and agents[0]["currentState"] == "ERROR", "the instance in ERROR")
    assert "does not exist" in (entry.get("error") or ""), entry
    assert "processId" not in entry, f"it ran: {entry}"
    assert not any(re.search(r"agent walled#\d+ ready", line) for line in gw.stderr_lines), gw.stderr_text()
    assert not os.path.exists(missing), "the gateway made the missing path instead of refusing"


# --------------------------------------------------------------------------- GPUs


def test_a_gpu_pool_of_two_never_gives_one_gpu_to_two_instances(gateway, agent_script, shared_dir):
    fleet = {**FAST_FLEET, "gpus": [0, 1], "prices": {"cpuHour": 0, "memoryGiBHour": 0, "gpuHour": 2.5}}
    gw, session = gateway({"fleet": fleet, "agents": {"gpu": template(
        agent_script, instances=2, maxConcurrency=1, resources={"gpu": 1})}})
    agents = poll(lambda: agents_of(session, "gpu"), running(2), "both instances running")
    assert sorted(a.get("gpus") or [] for a in agents) == [["0"], ["1"]], [(a["agentId"], a.get("gpus")) for a in agents]

    # One slot per instance: two probes held at a gate run on the two instances.
    gate = shared_dir / "gate"
    held = [session.request("tools/call", {"name": "probe", "arguments": {"gate": str(gate)}}) for _ in range(2)]
    poll(lambda: agents_of(session, "gpu"), lambda a: all(x.get("inFlight") == 1 for x in a), "both instances busy")
    gate.touch()
    seen = [json.loads(text_of(session.reply(request_id, WAIT))) for request_id in held]
    assert len({s["instance"] for s in seen}) == 2, seen
    assert sorted(s["cuda"] for s in seen) == ["0", "1"], [s["cuda"] for s in seen]

    refused = session.call("agents/scale", {"template": "gpu", "instances": 3})
    assert refused.get("error", {}).get("code") == -32602, f"a third GPU instance was accepted: {refused}"
    message = refused["error"]["message"]
    assert re.search(r"gpu", message, re.I) and re.search(r"pool|\b2\b", message, re.I), message

    status = fleet_status(session)
    assert status["capacity"]["gpus"] == ["0", "1"], status["capacity"]
    assert status["allocated"]["gpus"] == 2, status["allocated"]
    assert status["costPerHour"] == pytest.approx(2 * 2.5), status
    assert status["allocated"]["costPerHour"] == pytest.approx(2 * 2.5), status["allocated"]
    grants = [g for g in status["grants"] if g["template"] == "gpu"]
    assert sorted(g["gpus"] for g in grants) == [["0"], ["1"]], grants
    assert [t["instances"] for t in status["templates"] if t["template"] == "gpu"] == [2]
    assert len(agents_of(session, "gpu")) == 2


# --------------------------------------------------------------------------- impossible requests


def test_requests_that_could_never_fit_are_refused(start_gateway, sb_bin, agent_script, tmp_path):
    gw = start_gateway("tcp")
    with RpcSession.connect(gw.tcp) as session:
        cpus = float(fleet_status(session)["capacity"]["cpu"])
        refused = session.call("agents/register", {
            "agentName": "greedy", "maxConcurrency": 1,
            "tools": [{"name": "greedy_tool", "inputSchema": {"type": "object"}}],
            "resourceRequirements": {"cpu": 9999, "memory": "999Ti", "gpu": 512},
        })
        assert refused.get("error", {}).get("code") == -32602, f"an impossible registration was accepted: {refused}"
        message = refused["error"]["message"]
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", message)]
        assert re.search(r"cpu", message, re.I) and any(abs(n - cpus) < 0.01 for n in numbers), \
            f"the refusal does not say the gateway may give {cpus:g} CPUs: {message}"
        assert not [a for a in session.result("agents/list")["agents"] if a["agentId"].startswith("greedy")]
        session.result("ping")

    config = tmp_path / "hungry.json"
    config.write_text(json.dumps({"agents": {"hungry": template(agent_script, resources={"cpu": 9999})}}))
    try:
        ended = subprocess.run([str(sb_bin), "serve", "--config", str(config), "--listen", "tcp://127.0.0.1:0"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the gateway started with a template asking 9999 CPUs:\n{e.stderr}") from None
    assert ended.returncode != 0, ended.stderr
    assert "hungry" in ended.stderr and re.search(r"cpu", ended.stderr, re.I), ended.stderr


# --------------------------------------------------------------------------- vertical scaling


def test_resize_changes_concurrency_and_limits_of_running_instances(gateway, agent_script):
    gw, session = gateway({"agents": {"elastic": template(
        agent_script, instances=2, maxConcurrency=1, resources={"memory": "64Mi"})}})
    require_cgroups(session)
    agents = poll(lambda: agents_of(session, "elastic"), running(2), "both instances running")
    pids = sorted(a["processId"] for a in agents)

    resized = session.result("agents/resize", {"template": "elastic", "maxConcurrency": 4})
    assert resized["template"] == "elastic" and resized["maxConcurrency"] == 4, resized
    assert [a["maxConcurrency"] for a in agents_of(session, "elastic")] == [4, 4]

    resized = session.result("agents/resize", {"template": "elastic", "resources": {"memory": "128Mi"}})
    assert resized["appliedLive"] is True, resized
    assert re.search(r"128Mi|134217728", json.dumps(resized["resources"])), resized["resources"]
    grants = [g for g in fleet_status(session)["grants"] if g["template"] == "elastic"]
    assert sorted(g["memoryBytes"] for g in grants) == [128 * MIB, 128 * MIB], grants
    # Live: the same processes, still answering.
    assert sorted(a["processId"] for a in agents_of(session, "elastic")) == pids
    assert call_tool(session, "work", {}).startswith("ok:")

    history = session.result("fleet/allocations", {"template": "elastic", "includeReleased": True})["allocations"]
    memory = [row for row in history if row["resourceType"] == "memory"]
    for agent in ("elastic#1", "elastic#2"):
        rows = [row for row in memory if row["agentId"] == agent]
        released = [row for row in rows if row.get("releasedAt") is not None]
        live = [row for row in rows if row.get("releasedAt") is None]
        assert released and len(live) == 1, f"{agent}: memory rows {rows}"
        # The only change was 64Mi -> 128Mi: every released memory row is the old size.
        for old in released:
            assert old["allocatedUnit"] == live[0]["allocatedUnit"], rows
            assert live[0]["allocatedAmount"] == pytest.approx(2 * old["allocatedAmount"]), rows
    current = session.result("fleet/allocations", {"template": "elastic"})["allocations"]
    assert current and all(row.get("releasedAt") is None for row in current), current


# --------------------------------------------------------------------------- rolling versions


def versioned(script: Path, version: str, *flags: str, **extra) -> dict:
    """A template of fleet_agent.py whose answers name `version` (and that fails, with --fail)."""
    return {"command": PYTHON, "args": [str(script), "--label", version, *flags], "version": version, **extra}


ROLLOUT = {"maxSurge": 1, "maxUnavailable": 0, "stepSeconds": 0.5, "canaryShare": 0.25, "canarySeconds": 1,
           "minimumCalls": 5, "readyTimeoutSeconds": 20}


class CallLoad:
    """Clients calling `work` over their own connections until stopped, each call answered or
    counted as failed: what users of the template see while it is rolled out."""

    def __init__(self, gw, clients: int = 4):
        import threading
        self.answers: list[str] = []
        self.failures: list[str] = []
        # (when the call was sent, on this process's monotonic clock; the failure)
        self.failures_at: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(gw,), daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self, gw):
        session = RpcSession.connect(gw.tcp)
        try:
            while not self.stopping.is_set():
                sent = time.monotonic()
                reply = session.call("tools/call", {"name": "work", "arguments": {"sleep": 0.02}}, WAIT)
                result = reply.get("result") or {}
                with self.lock:
                    if "result" in reply and not result.get("isError"):
                        self.answers.append(result["content"][0]["text"])
                    else:
                        self.failures.append(json.dumps(reply)[:300])
                        self.failures_at.append((sent, json.dumps(reply)[:300]))
        finally:
            session.close()

    def versions(self) -> list[str]:
        with self.lock:
            return [answer.rsplit(":", 1)[-1] for answer in self.answers]

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=WAIT)


def rollouts(session: RpcSession, name: str) -> list:
    return session.result("fleet/rollouts", {"template": name})["rollouts"]


def rewrite(path: Path, config: dict) -> None:
    path.write_text(json.dumps(config, indent=2))


def test_a_reload_rolls_a_template_to_a_new_version_with_no_failed_call(start_gateway, agent_script, tmp_path):
    path = tmp_path / "gateway.json"
    rewrite(path, {"agents": {"pricing": versioned(agent_script, "1", instances=2, maxConcurrency=4, rollout=ROLLOUT)}})
    gw = start_gateway("tcp", extra=["--config", str(path)])
    session = RpcSession.connect(gw.tcp)
    poll(lambda: agents_of(session, "pricing"), running(2), "two instances of version 1")

    load = CallLoad(gw)
    try:
        poll(load.versions, lambda seen: len(seen) >= 20, "calls answered before the reload")
        rewrite(path, {"agents": {"pricing": versioned(agent_script, "2", instances=2, maxConcurrency=4, rollout=ROLLOUT)}})
        report = session.result("gateway/reload")
        assert report["rolling"] == ["pricing"], report
        done = poll(lambda: rollouts(session, "pricing"), lambda r: r and r[0]["outcome"] != "rolling", "the rollout over")[0]
        assert done["outcome"] == "completed", done
        assert (done["from"], done["to"]) == ("1", "2"), done
        # The canary's share came first, then shares that follow the counts.
        assert any("25% of calls" in step for step in done["steps"]), done["steps"]
        answered_during = len(load.versions())
        poll(load.versions, lambda seen: len(seen) >= answered_during + 20, "calls answered after the rollout")
    finally:
        load.stop()

    assert load.failures == [], f"{len(load.failures)} calls failed during the rollout: {load.failures[:5]}"
    seen = load.versions()
    assert {"1", "2"} <= set(seen), f"answers came from {set(seen)}"
    assert set(seen[-10:]) == {"2"}, f"the last answers came from {seen[-10:]}"
    listed = poll(lambda: agents_of(session, "pricing"), running(2), "two instances of version 2")
    assert {a["version"] for a in listed} == {"2"} and all(a["activeVersion"] for a in listed), listed
    session.close()


def test_a_new_version_that_fails_is_rolled_back_on_its_own(start_gateway, agent_script, tmp_path):
    path = tmp_path / "gateway.json"
    rewrite(path, {"agents": {"pricing": versioned(agent_script, "1", instances=2, maxConcurrency=4, rollout=ROLLOUT)}})
    gw = start_gateway("tcp", extra=["--config", str(path)])
    session = RpcSession.connect(gw.tcp)
    poll(lambda: agents_of(session, "pricing"), running(2), "two instances of version 1")

    load = CallLoad(gw)
    try:
        poll(load.versions, lambda seen: len(seen) >= 20, "calls answered before the reload")
        rewrite(path, {"agents": {"pricing": versioned(agent_script, "2", "--fail", instances=2, maxConcurrency=4, rollout=ROLLOUT)}})
        assert session.result("gateway/reload")["rolling"] == ["pricing"]
        done = poll(lambda: rollouts(session, "pricing"), lambda r: r and r[0]["outcome"] != "rolling", "the rollout over")[0]
        rolled_back_by = time.monotonic()
        failed_during = len(load.failures)
        answered = len(load.versions())
        poll(load.versions, lambda seen: len(seen) >= answered + 20, "calls answered after the rollback")
    finally:
        load.stop()

    assert done["outcome"] == "rolledBack", done
    assert re.search(r"failed \d+ of \d+ calls|error rate", done["reason"]), done["reason"]
    # Only the canary's share ever reached the broken version, and nothing after the rollback.
    assert failed_during > 0, "no call reached the broken version: the canary was not tried"
    after = [failure for sent, failure in load.failures_at if sent > rolled_back_by]
    assert after == [], f"calls made after the rollback failed: {after[:5]}"
    assert set(load.versions()[-10:]) == {"1"}, load.versions()[-10:]
    listed = poll(lambda: agents_of(session, "pricing"), running(2), "two instances of version 1 again")
    assert {a["version"] for a in listed} == {"1"} and all(a["activeVersion"] for a in listed), listed
    session.close()


def test_sighup_reloads_and_agents_rollback_returns_a_spawned_template_to_its_last_version(start_gateway, agent_script, tmp_path):
    import signal
    path = tmp_path / "gateway.json"
    rollout = {**ROLLOUT, "canaryShare": 0}
    rewrite(path, {"agents": {"pricing": versioned(agent_script, "1", instances=1, rollout=rollout)}})
    gw = start_gateway("tcp", extra=["--config", str(path)])
    session = RpcSession.connect(gw.tcp)
    poll(lambda: agents_of(session, "pricing"), running(1), "version 1 running")

    # SIGHUP reads the file again: a template added, the other rolled to version 2.
    rewrite(path, {"agents": {
        "pricing": versioned(agent_script, "2", instances=1, rollout=rollout),
        "quotes": {**versioned(agent_script, "q", instances=1), "toolPrefix": "q_"},
    }})
    gw.proc.send_signal(signal.SIGHUP)
    poll(lambda: agents_of(session, "quotes"), running(1), "the added template running")
    assert call_tool(session, "q_work", {}).endswith(":q")
    done = poll(lambda: rollouts(session, "pricing"), lambda r: r and r[0]["outcome"] != "rolling", "the rollout over")[0]
    assert done["outcome"] == "completed", done
    assert call_tool(session, "work", {}).endswith(":2")

    back = session.result("agents/rollback", {"template": "pricing"})
    assert (back["from"], back["to"], back["rollingOut"]) == ("2", "1", True), back
    done = poll(lambda: rollouts(session, "pricing"), lambda r: r and r[0]["outcome"] != "rolling" and r[0]["to"] == "1",
                "the rollback over")[0]
    assert done["outcome"] == "completed", done
    assert call_tool(session, "work", {}).endswith(":1")

    # A template taken out of the file drains and stops.
    rewrite(path, {"agents": {"pricing": versioned(agent_script, "1", instances=1, rollout=rollout)}})
    report = session.result("gateway/reload")
    assert report["removed"] == ["quotes"] and report["unchanged"] == ["pricing"], report
    poll(lambda: agents_of(session, "quotes"), lambda agents: agents == [], "the removed template gone")
    session.close()


# --------------------------------------------------------------------------- zones


def test_calls_prefer_the_callers_zone_and_fail_over_to_another(gateway, agent_script):
    gw, session = gateway({"fleet": {**FAST_FLEET, "zone": "b"}, "agents": {"geo": template(
        agent_script, instances=2, maxConcurrency=4, zones=["a", "b"])}})
    listed = poll(lambda: agents_of(session, "geo"), running(2), "two instances")
    by_zone = {a["zone"]: a for a in listed}
    assert set(by_zone) == {"a", "b"}, f"instances not spread over the zones: {[(a['agentId'], a.get('zone')) for a in listed]}"

    def answered_by(meta: dict | None) -> set[int]:
        params = {"name": "work", "arguments": {}}
        if meta:
            params["_meta"] = meta
        return {pid_of(text_of(session.call("tools/call", params, WAIT))) for _ in range(12)}

    # This gateway's zone is b: calls that name none stay there; a caller in a stays in a.
    assert answered_by(None) == {by_zone["b"]["processId"]}
    assert answered_by({"switchboard/zone": "a"}) == {by_zone["a"]["processId"]}
    # Zone b loses its instance: its calls go to zone a rather than fail.
    session.result("agents/drain", {"agentId": by_zone["b"]["agentId"]})
    poll(lambda: agents_of(session, "geo"), lambda agents: [a["agentId"] for a in agents] == [by_zone["a"]["agentId"]],
         "the zone-b instance gone")
    assert answered_by(None) == {by_zone["a"]["processId"]}


# --------------------------------------------------------------------------- cost


def test_cost_aware_routing_prefers_the_cheaper_template_while_its_latency_holds(gateway, agent_script):
    fleet = {**FAST_FLEET, "costAware": True, "latencyObjectiveMs": 150, "prices": {"cpuHour": 1.0}}
    gw, session = gateway({"fleet": fleet, "agents": {
        "cheap": versioned(agent_script, "cheap", instances=1, maxConcurrency=8, resources={"cpu": 0.1}),
        "dear": versioned(agent_script, "dear", instances=1, maxConcurrency=8, resources={"cpu": 1}),
    }})
    poll(lambda: agents_of(session, "cheap") + agents_of(session, "dear"), running(2), "both templates running")
    status = fleet_status(session)
    assert status["costPerHour"] == 1.1, status

    # A host lists once: the tool both offer is there under its own name.
    listing = RpcSession.connect(gw.tcp)
    names = {tool["name"] for tool in listing.result("tools/list")["tools"]}
    listing.close()
    assert {"work", "cheap__work", "dear__work"} <= names, names

    assert {call_tool(session, "work", {}).rsplit(":", 1)[-1] for _ in range(8)} == {"cheap"}
    # The cheaper one grows slow, past the objective: calls go to the dearer one.
    for _ in range(6):
        call_tool(session, "cheap__work", {"sleep": 0.3})
    assert {call_tool(session, "work", {}).rsplit(":", 1)[-1] for _ in range(8)} == {"dear"}


def test_a_higher_priority_class_takes_the_resources_of_a_lower_one(gateway, agent_script):
    fleet = {**FAST_FLEET, "capacity": {"cpu": 1}}
    gw, session = gateway({"fleet": fleet, "agents": {
        "batch": {**template(agent_script, instances=2, resources={"cpu": 0.5}), "priorityClass": "low", "toolPrefix": "b_"},
        "urgent": {**template(agent_script, instances=0, resources={"cpu": 0.5}), "priorityClass": "high", "toolPrefix": "u_"},
    }})
    batch = poll(lambda: agents_of(session, "batch"), running(2), "the low class holding the whole capacity")
    assert fleet_status(session)["allocated"]["cpu"] == 1

    # The high class needs half a core: the newest low-class instance gives it up.
    session.result("agents/scale", {"template": "urgent", "instances": 1})
    poll(lambda: agents_of(session, "urgent"), running(1), "the high class started")
    left = poll(lambda: agents_of(session, "batch"), lambda agents: len(agents) == 1, "one low-class instance left")
    assert left[0]["agentId"] == min(a["agentId"] for a in batch), left
    assert call_tool(session, "u_work", {}).startswith("ok:")
    grants = {g["agentId"]: g for g in fleet_status(session)["grants"]}
    assert sorted(grants) == [left[0]["agentId"], "urgent#1"], grants

    # Never the other way: the low class cannot take it back.
    reply = session.call("agents/scale", {"template": "batch", "instances": 2})
    assert reply.get("error", {}).get("code") == -32602 and "CPU" in reply["error"]["message"], reply


# --------------------------------------------------------------------------- replicas


def test_with_replicas_the_leader_alone_scales_a_template(start_gateway, agent_script, shared_dir, tmp_path):
    from test_replicas import RedisServer
    redis = RedisServer()
    redis.start()
    try:
        autoscale = {"min": 1, "max": 3, "targetUtilization": 1.0, "scaleUpAfterSeconds": 0.5,
                     "scaleDownAfterSeconds": 1, "cooldownSeconds": 0.2}
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps({"fleet": FAST_FLEET, "agents": {"worker": template(
            agent_script, instances=1, maxConcurrency=1, autoscale=autoscale)}}))
        gateways = {name: start_gateway("tcp", extra=["--config", str(path), "--redis", redis.url, "--replica-id", name])
                    for name in ("r1", "r2")}
        sessions = {name: RpcSession.connect(gw.tcp) for name, gw in gateways.items()}

        def own(name: str) -> list:
            return [a for a in agents_of(sessions[name], "worker") if a.get("replica") == name]

        for name in sessions:
            poll(lambda: own(name), running(1), f"{name}'s instance")
        # Work queued on the shared board, submitted at the replica that does not lead.
        gate = shared_dir / "gate"
        ids = [sessions["r2"].result("tasks/submit", {"taskType": "work", "taskData": {"gate": str(gate)}, "timeout": 60})["taskId"]
               for _ in range(6)]
        poll(lambda: own("r1"), running(3), "the leader's instances grown to the max")
        assert len(own("r2")) == 1, "the replica that does not lead scaled too"
        assert decisions(sessions["r1"], "worker", "scaleUp"), "the leader decided nothing"
        assert decisions(sessions["r2"], "worker") == [], decisions(sessions["r2"], "worker")

        gate.touch()
        waiting = [sessions["r2"].request("tasks/result", {"taskId": task}) for task in ids]
        for request_id in waiting:
            pid_of(text_of(sessions["r2"].reply(request_id, WAIT)))
        poll(lambda: own("r1"), lambda agents: len(agents) == 1, "the leader back to its min")
        for session in sessions.values():
            session.close()
    finally:
        redis.cleanup()


def test_without_cgroups_memory_is_held_by_setrlimit_and_a_cpu_limit_is_refused(gateway, agent_script):
    gw, session = gateway({"fleet": {**FAST_FLEET, "cgroups": False}, "agents": {
        "small": {**template(agent_script, instances=1, resources={"memory": "256Mi"}), "toolPrefix": "s_"},
        "timed": {**template(agent_script, instances=1, resources={"cpu": 0.5}), "toolPrefix": "t_"},
    }})
    assert fleet_status(session)["enforcement"]["limits"] == "setrlimit"
    [small] = poll(lambda: agents_of(session, "small"), running(1), "the rlimited instance")
    assert any("setrlimit" in line for line in small["isolation"]), small
    # An address-space limit fails the allocation inside the agent, which lives on.
    reply = session.call("tools/call", {"name": "s_allocate", "arguments": {"mib": 512}}, WAIT)
    assert reply["result"].get("isError") and "MemoryError" in reply["result"]["content"][0]["text"], reply
    assert call_tool(session, "s_work", {}) == f"ok:{small['processId']}"
    # CPU cannot be held without cgroups: the start is refused, not made unlimited.
    [timed] = poll(lambda: agents_of(session, "timed"), lambda agents: agents and agents[0]["currentState"] == "ERROR", "the cpu-limited start refused")
    assert "control groups" in timed["error"] and "processId" not in timed, timed


def test_a_template_without_a_version_rolls_out_under_a_revision_and_an_unchanged_file_stays_unchanged(
        start_gateway, agent_script, tmp_path):
    path = tmp_path / "gateway.json"
    rollout = {**ROLLOUT, "canaryShare": 0}
    plain = {"command": PYTHON, "args": [str(agent_script), "--label", "a"], "instances": 1, "rollout": rollout}
    rewrite(path, {"agents": {"plain": plain}})
    gw = start_gateway("tcp", extra=["--config", str(path)])
    session = RpcSession.connect(gw.tcp)
    poll(lambda: agents_of(session, "plain"), running(1), "the first version running")

    changed = {**plain, "args": [str(agent_script), "--label", "b"]}
    rewrite(path, {"agents": {"plain": changed}})
    assert session.result("gateway/reload")["rolling"] == ["plain"]
    done = poll(lambda: rollouts(session, "plain"), lambda r: r and r[0]["outcome"] != "rolling", "the rollout over")[0]
    assert (done["outcome"], done["from"]) == ("completed", "1") and re.fullmatch(r"1\+r\d+", done["to"]), done
    assert call_tool(session, "work", {}).endswith(":b")

    # The same file again: nothing to do. A change of concurrency alone is made in place.
    assert session.result("gateway/reload")["unchanged"] == ["plain"]
    rewrite(path, {"agents": {"plain": {**changed, "maxConcurrency": 3}}})
    assert session.result("gateway/reload")["resized"] == ["plain"]
    assert [a["maxConcurrency"] for a in agents_of(session, "plain")] == [3]
    assert len(rollouts(session, "plain")) == 1
    session.close()
