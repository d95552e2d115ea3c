"""The task engine and the patterns, end to end, with real agent processes.

Every agent is `agents/task_agent.py`, a small attached agent with a configurable delay and
failure rate, started as its own process; several processes registering one agentName are
instances of one template (a pool). The client side is raw JSON-RPC over TCP (sbwire).

What is checked (chapter 10 of the specification):
- 2,000 tasks with mixed priorities on a pool where one agent is slow and one fails half the
  time: every task ends COMPLETED, FAILED or TIMEOUT with a reason, none is lost or stuck,
  each result is its own task's, higher priorities finish first, and the failing agent gets
  fewer and fewer tasks (its learned success rate, its circuit);
- the circuit breaker of an always-failing agent opens after 5 consecutive failures, a failed
  attempt is retried on another agent, after the open period one probe call goes through, and
  failures of calls already in flight do not lengthen the open period;
- a new instance gets tried beside a fast, warmed-up one;
- routing hints (sticky key, tenant); cancellation and timeouts reaching the agent;
- waiting tasks dispatched when an agent comes back from MAINTENANCE or a new instance joins;
- scatter-gather with a slow and a failing agent, and losing a `first` race is no failure;
  a pipeline across two agents.

Waiting: a test waits for what announces itself (a reply, an agent's log line); states that
nothing announces are polled with a bounded loop.
"""

from __future__ import annotations

import collections
import json
import random
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest

from sbwire import REPLY_TIMEOUT, LoggedProcess, RpcSession, jline, req

TASK_AGENT = Path(__file__).resolve().parent / "agents" / "task_agent.py"
CALL_LINE = re.compile(r'^call (\S+) n=(\S+) (ok|failed|cancelled) t=([0-9.]+)$')


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def agent():
    """Factory: agent(gateway_url, name, tool..., delay=, fail_rate=, ...) -> a registered TaskAgent."""
    started = []

    def start(url: str, name: str, *tools: str, label: str | None = None, delay: float = 0.0, fail_rate: float = 0.0,
              fail_with: str = "result", max_concurrency: int = 16, capabilities=(), seed: int | None = None) -> TaskAgent:
        args = [sys.executable, TASK_AGENT, url, "--name", name, "--delay", delay, "--fail-rate", fail_rate,
                "--fail-with", fail_with, "--max-concurrency", max_concurrency]
        for tool in tools:
            args += ["--tool", tool]
        for tag in capabilities:
            args += ["--capability", tag]
        if label:
            args += ["--label", label]
        if seed is not None:
            args += ["--seed", seed]
        proc = LoggedProcess(args)
        started.append(proc)
        agent_id = proc.wait_line(r"registered as (\S+)").group(1)
        return TaskAgent(proc, agent_id, label or name)

    yield start
    for proc in started:
        proc.kill()


class TaskAgent:
    def __init__(self, proc: LoggedProcess, agent_id: str, label: str):
        self.proc, self.id, self.label = proc, agent_id, label

    def calls(self) -> list:
        """(request id, n, outcome, monotonic time) of every call it has seen end, in order."""
        found = []
        for line in self.proc.text(last=10**9).splitlines():
            m = CALL_LINE.match(line)
            if m:
                found.append((m.group(1), json.loads(m.group(2)), m.group(3), float(m.group(4))))
        return found

    def wait_call(self, outcome: str, n=None, timeout: float = REPLY_TIMEOUT) -> re.Match:
        n_text = r"\S+" if n is None else re.escape(json.dumps(n))
        return self.proc.wait_line(rf"^call \S+ n={n_text} {outcome} ", timeout)


class Replies:
    """Many requests outstanding on one connection; each reply is kept with the time it arrived.

    Keep fewer than the gateway's maxInFlightPerConnection (1024) outstanding on one connection.
    """

    def __init__(self, endpoint):
        self.sock = endpoint.connect()
        self.sock.settimeout(None)
        self.cond = threading.Condition()
        self.replies: dict = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.sock.makefile("rb"):
            message = json.loads(line)
            if "method" in message:
                if message["method"] == "ping" and "id" in message:
                    self.send({"jsonrpc": "2.0", "id": message["id"], "result": {}})
                continue
            with self.cond:
                self.replies[json.dumps(message["id"])] = (time.monotonic(), message)
                self.cond.notify_all()

    def send(self, message):
        with self.lock:
            self.sock.sendall(jline(message))

    def request(self, method, params, id_):
        self.send(req(method, id_, params))

    def wait(self, ids, timeout: float) -> dict:
        """id -> (arrival time, reply) for every id; fails naming what is missing at the deadline."""
        keys = {json.dumps(i): i for i in ids}
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(k in self.replies for k in keys):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = [i for k, i in keys.items() if k not in self.replies]
                    raise AssertionError(f"{len(missing)} of {len(keys)} replies missing after {timeout}s: {missing[:5]}")
                self.cond.wait(remaining)
            return {i: self.replies[k] for k, i in keys.items()}

    def close(self):
        self.sock.close()


def poll(fetch, check, what: str, timeout: float = REPLY_TIMEOUT, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so within {timeout}s; last: {json.dumps(value)[:2000]}")
        time.sleep(interval)


def all_tasks(session: RpcSession, **filters) -> list:
    """Every task that tasks/list gives for the filters, following nextCursor."""
    tasks, cursor = [], None
    while True:
        params = dict(filters, **({"cursor": cursor} if cursor else {}))
        page = session.result("tasks/list", params)
        assert len(page["tasks"]) <= 100, "a page holds at most 100 tasks"
        tasks += page["tasks"]
        cursor = page.get("nextCursor")
        if cursor is None:
            return tasks


def submit(session: RpcSession, **params) -> dict:
    return session.result("tasks/submit", params)


def result_of(session: RpcSession, task_id: str, timeout: float = REPLY_TIMEOUT) -> dict:
    return session.call("tasks/result", {"taskId": task_id}, timeout)


def result_or_cancel(session: RpcSession, task_id: str, timeout: float) -> dict:
    """tasks/result within `timeout`; otherwise the task is cancelled (so that nothing is left
    waiting in the gateway) and the test fails with the task as it was."""
    request_id = session.request("tasks/result", {"taskId": task_id})
    try:
        return session.reply(request_id, timeout)
    except TimeoutError:
        stuck = session.result("tasks/cancel", {"taskId": task_id})
        session.reply(request_id)
        raise AssertionError(f"task {task_id} did not end within {timeout}s: {json.dumps(stuck)}") from None


def learned(session: RpcSession, agent_id: str, tool: str) -> dict:
    return session.result("agents/get", {"agentId": agent_id})["learned"].get(tool, {"calls": 0})


# --------------------------------------------------------------------------- thousands of tasks


def test_two_thousand_tasks_on_a_pool_with_a_slow_and_a_flaky_agent(start_gateway, agent, tmp_path):
    gw = start_gateway("tcp")
    url = gw.tcp.url
    good = agent(url, "pool", "work", label="good", delay=0.005, max_concurrency=4)
    slow = agent(url, "pool", "work", label="slow", delay=0.2, max_concurrency=4)
    flaky = agent(url, "pool", "work", label="flaky", delay=0.005, fail_rate=0.5, max_concurrency=4, seed=11)
    label_of = {good.id: "good", slow.id: "slow", flaky.id: "flaky"}
    session = RpcSession.connect(gw.tcp)

    # Twelve tasks that hold every slot until the gate opens: the 2,000 then queue up behind
    # them, and the queue order alone decides who goes first.
    gate = tmp_path / "gate"
    for _ in range(12):
        submit(session, taskType="work", taskData={"gate": str(gate), "n": -1}, priority=1, maxRetries=10,
               backoff="fixed", backoffDelay=0)
    poll(lambda: [a["inFlight"] for a in session.result("agents/list", {"template": "pool"})["agents"]],
         lambda v: v == [4, 4, 4], "every slot of the pool taken")

    n_tasks = 2000
    rng = random.Random(2024)
    specs = []
    for n in range(n_tasks):
        spec = {"taskType": "work", "taskData": {"n": n, "text": f"t{n}"}, "priority": rng.randint(1, 10),
                "maxRetries": rng.choice([0, 1, 3]), "backoff": "fixed", "backoffDelay": 0.05}
        if n % 100 == 50:    # fails wherever it runs: FAILED after 3 attempts
            spec.update(taskData={"n": n, "fail": True}, maxRetries=2)
        elif n % 100 == 75:  # outlasts its timeout wherever it runs: TIMEOUT
            spec.update(taskData={"n": n, "sleep": 2}, timeout=0.3, maxRetries=0)
        specs.append(spec)
    pending_ids = [session.request("tasks/submit", spec) for spec in specs]
    task_ids = []
    for request_id, spec in zip(pending_ids, specs):
        status = session.reply(request_id)["result"]
        assert status["state"] == "PENDING" and status["status"] == "working", status
        assert status["priority"] == spec["priority"] and status["maxRetries"] == spec["maxRetries"], status
        task_ids.append(status["taskId"])
    assert len(set(task_ids)) == n_tasks, "every task has its own id"

    # A tasks/result for every task, waiting, spread over four connections; then the gate opens.
    readers = [Replies(gw.tcp) for _ in range(4)]
    for n, task_id in enumerate(task_ids):
        readers[n % 4].request("tasks/result", {"taskId": task_id}, n)
    session.result("ping")
    opened = time.monotonic()
    gate.touch()
    outcome = {}
    for k, reader in enumerate(readers):
        outcome.update(reader.wait(range(k, n_tasks, 4), timeout=120))
    for reader in readers:
        reader.close()

    # Every task ended, with a reason, and every result is its own task's.
    ends = collections.Counter()
    for n, (_, reply) in outcome.items():
        spec = specs[n]
        if "result" in reply:
            ends["COMPLETED"] += 1
            assert reply["result"]["structuredContent"]["n"] == n, (n, reply)
            assert spec["taskData"].get("fail") is None and "sleep" not in spec["taskData"], (n, reply)
            continue
        error = reply["error"]
        task = error["data"]
        ends[task["state"]] += 1
        assert task["taskId"] == task_ids[n], (n, reply)
        assert error["code"] == (-32013 if task["state"] == "TIMEOUT" else -32014), reply
        assert task["state"] in {"FAILED", "TIMEOUT"} and task["status"] == "failed", reply
        assert isinstance(task.get("errorMessage"), str) and task["errorMessage"], reply
        assert len(task["attempts"]) == task["retryCount"] + 1 == spec["maxRetries"] + 1, reply
        assert all(isinstance(a.get("error"), str) and a["error"] for a in task["attempts"]), reply
        if len(task["attempts"]) > 1:
            assert task["errorMessage"].startswith(f"all {len(task['attempts'])} attempts failed: #1 on "), reply
        if spec["taskData"].get("fail"):
            assert task["state"] == "FAILED" and len(task["attempts"]) == 3, reply
        if "sleep" in spec["taskData"]:
            assert task["state"] == "TIMEOUT" and len(task["attempts"]) == 1, reply
    assert ends["COMPLETED"] >= n_tasks * 0.9, ends
    assert ends["FAILED"] >= 20 and ends["TIMEOUT"] == 20, ends

    # None lost, none stuck: tasks/list agrees, and nothing is left waiting or running.
    listed = all_tasks(session, taskType="work")
    assert len(listed) == n_tasks + 12
    assert [t["taskId"] for t in listed[12:]] == task_ids, "tasks/list is in submission order"
    assert collections.Counter(t["state"] for t in listed[12:]) == ends
    for state in ("PENDING", "ASSIGNED", "RUNNING", "CANCELLED"):
        assert all_tasks(session, taskType="work", state=state) == [], state

    # Higher priorities finish first, on average.
    finished = collections.defaultdict(list)
    for n, (arrived, _) in outcome.items():
        finished[specs[n]["priority"]].append(arrived - opened)
    mean = {p: statistics.mean(times) for p, times in finished.items()}
    high = statistics.mean(mean[p] for p in (1, 2, 3))
    middle = statistics.mean(mean[p] for p in (4, 5, 6, 7))
    low = statistics.mean(mean[p] for p in (8, 9, 10))
    assert high < middle < low, {p: round(m, 3) for p, m in sorted(mean.items())}
    assert mean[1] < mean[10], mean

    # Then a steady trickle, two tasks at a time, where the router can choose among free agents.
    paced = collections.Counter()
    for k in range(100):
        ids = [submit(session, taskType="work", taskData={"n": 10_000 + 2 * k + j}, maxRetries=3, backoff="fixed",
                      backoffDelay=0)["taskId"] for j in range(2)]
        for task_id in ids:
            assert "result" in result_of(session, task_id), task_id
            paced[label_of[session.result("tasks/get", {"taskId": task_id})["attempts"][0]["agentId"]]] += 1

    # The flaky agent got fewer and fewer tasks: compare its share of the first calls after the
    # gate opened with its share of the last ones (the trickle).
    calls = sorted((t, label) for a, label in ((good, "good"), (slow, "slow"), (flaky, "flaky"))
                   for (_, n, _, t) in a.calls() if n is not None and n >= 0)
    first = [label for _, label in calls[:150]]
    last = [label for _, label in calls[-200:]]
    share_first = first.count("flaky") / len(first)
    share_last = last.count("flaky") / len(last)
    assert share_last < share_first and share_last <= 0.05, (share_first, share_last, paced)
    assert paced["good"] >= 190, paced

    # What the router learned, as agents/get shows it.
    learned_good = learned(session, good.id, "work")
    learned_slow = learned(session, slow.id, "work")
    learned_flaky = learned(session, flaky.id, "work")
    assert learned_flaky["successRate"] < learned_good["successRate"], (learned_good, learned_flaky)
    flaky_metrics = session.result("agents/get", {"agentId": flaky.id})["performanceMetrics"]
    assert flaky_metrics["successRate"] < 0.8 and flaky_metrics["tasksFailed"] > 0, flaky_metrics
    assert learned_slow["averageLatencyMs"] > 150 > learned_good["averageLatencyMs"], (learned_good, learned_slow)
    assert learned_good["calls"] > learned_slow["calls"] and learned_good["calls"] > learned_flaky["calls"]
    circuit = session.result("agents/get", {"agentId": flaky.id})["circuit"]
    assert circuit["state"] in {"closed", "open", "half-open"} and isinstance(circuit["consecutiveFailures"], int), circuit


# --------------------------------------------------------------------------- circuit breakers and retries


def test_circuit_breaker_opens_for_an_always_failing_agent(start_gateway, agent):
    gw = start_gateway("tcp")
    # Both take 20 ms a call, so that until an instance has 5 calls its optimistic score
    # (chapter 10) is the better one: the bad agent is tried until its circuit opens.
    bad = agent(gw.tcp.url, "brittle", "job", label="bad", delay=0.02, fail_rate=1.0)
    good = agent(gw.tcp.url, "brittle", "job", label="good", delay=0.02)
    session = RpcSession.connect(gw.tcp)

    runs = []
    for n in range(12):
        task_id = submit(session, taskType="job", taskData={"n": n}, maxRetries=1, backoff="fixed", backoffDelay=0)["taskId"]
        reply = result_of(session, task_id)
        assert reply["result"]["structuredContent"]["agent"] == "good", reply
        runs.append([a["agentId"] for a in session.result("tasks/get", {"taskId": task_id})["attempts"]])
    # A failed attempt is retried on another agent; once the circuit is open the bad agent gets nothing.
    assert all(r in ([good.id], [bad.id, good.id]) for r in runs), runs
    assert sum(r[0] == bad.id for r in runs) == 5, runs
    assert all(r == [good.id] for r in runs[-5:]), runs

    status = session.result("agents/get", {"agentId": bad.id})
    assert status["circuit"]["state"] == "open", status["circuit"]
    assert status["circuit"]["consecutiveFailures"] == 5, status["circuit"]
    assert 0 < status["circuit"]["retryInSeconds"] <= 10, status["circuit"]
    assert status["learned"]["job"]["calls"] == 5 and status["learned"]["job"]["successRate"] == 0, status["learned"]
    assert len(bad.calls()) == 5
    healthy = session.result("agents/get", {"agentId": good.id})
    assert healthy["circuit"] == {"state": "closed", "consecutiveFailures": 0}, healthy["circuit"]


def test_a_half_open_circuit_lets_one_probe_through(start_gateway, agent):
    """Open for 10 s after 5 consecutive failures, then one probe call; it fails: open for 20 s."""
    gw = start_gateway("tcp")
    lonely = agent(gw.tcp.url, "lonely", "job", fail_rate=1.0)
    session = RpcSession.connect(gw.tcp)
    for n in range(5):
        task_id = submit(session, taskType="job", taskData={"n": n}, maxRetries=0)["taskId"]
        assert result_of(session, task_id)["error"]["data"]["state"] == "FAILED"
    circuit = session.result("agents/get", {"agentId": lonely.id})["circuit"]
    assert circuit["state"] == "open" and circuit["consecutiveFailures"] == 5, circuit

    task_id = submit(session, taskType="job", taskData={"n": 5}, maxRetries=0)["taskId"]
    time.sleep(0.5)
    assert session.result("tasks/get", {"taskId": task_id})["state"] == "PENDING"
    assert len(lonely.calls()) == 5, "no call while the circuit is open"
    # The open period ends: the waiting task is the probe.
    reply = result_or_cancel(session, task_id, timeout=circuit["retryInSeconds"] + 5)
    assert reply["error"]["data"]["state"] == "FAILED", reply
    assert len(lonely.calls()) == 6
    circuit = session.result("agents/get", {"agentId": lonely.id})["circuit"]
    assert circuit["state"] == "open" and 10 < circuit["retryInSeconds"] <= 20, circuit


def test_failures_in_flight_do_not_lengthen_an_open_circuit(start_gateway, agent):
    """Eight calls fail together: the circuit opens once, for 10 s; only a failed probe doubles it."""
    gw = start_gateway("tcp")
    burst = agent(gw.tcp.url, "burst", "job", delay=0.2, fail_rate=1.0, max_concurrency=8)
    session = RpcSession.connect(gw.tcp)
    pending = [session.request("tasks/submit", {"taskType": "job", "taskData": {"n": n}, "maxRetries": 0}) for n in range(8)]
    task_ids = [session.reply(p)["result"]["taskId"] for p in pending]
    for task_id in task_ids:
        assert result_of(session, task_id)["error"]["data"]["state"] == "FAILED"
    circuit = session.result("agents/get", {"agentId": burst.id})["circuit"]
    assert circuit["state"] == "open" and circuit["consecutiveFailures"] == 8, circuit
    assert circuit["retryInSeconds"] <= 10, circuit


def test_a_new_instance_gets_tried(start_gateway, agent):
    """Until an instance has 5 calls it is scored optimistically: a newcomer beside a fast,
    warmed-up instance gets some of the work even when calls come one at a time."""
    gw = start_gateway("tcp")
    veteran = agent(gw.tcp.url, "quick", "job", label="veteran")
    session = RpcSession.connect(gw.tcp)
    for n in range(8):
        assert "result" in result_of(session, submit(session, taskType="job", taskData={"n": n})["taskId"])
    newcomer = agent(gw.tcp.url, "quick", "job", label="newcomer")
    ran = collections.Counter()
    for n in range(10):
        task_id = submit(session, taskType="job", taskData={"n": 100 + n})["taskId"]
        ran[result_of(session, task_id)["result"]["structuredContent"]["agent"]] += 1
    assert ran["newcomer"] >= 1, (ran, learned(session, veteran.id, "job"), learned(session, newcomer.id, "job"))


# --------------------------------------------------------------------------- routing, cancellation, timeouts


def test_sticky_key_and_tenant_routing(start_gateway, agent):
    gw = start_gateway("tcp")
    plain = agent(gw.tcp.url, "routed", "job", label="plain")
    acme = agent(gw.tcp.url, "routed", "job", label="acme", capabilities=["tenant:acme"])
    session = RpcSession.connect(gw.tcp)

    def ran_on(**params) -> str:
        task_id = submit(session, taskType="job", **params)["taskId"]
        assert "result" in result_of(session, task_id)
        return session.result("tasks/get", {"taskId": task_id})["assignedAgent"]["agentId"]

    assert len({ran_on(routing={"stickyKey": "user-7"}) for _ in range(6)}) == 1
    assert len({ran_on(routing={"stickyKey": "user-8"}) for _ in range(6)}) == 1
    assert {ran_on(routing={"tenant": "acme"}) for _ in range(4)} == {acme.id}
    assert {ran_on(requiredCapabilities=["tenant:acme"]) for _ in range(2)} == {acme.id}
    task_id = submit(session, taskType="job", routing={"tenant": "globex"})["taskId"]
    failed = result_of(session, task_id)["error"]
    assert failed["code"] == -32014 and failed["data"]["attempts"] == [], failed


def test_cancel_and_timeout_reach_the_agent(start_gateway, agent):
    gw = start_gateway("tcp")
    sleeper = agent(gw.tcp.url, "sleeper", "nap", delay=30)
    session = RpcSession.connect(gw.tcp)

    task_id = submit(session, taskType="nap", taskData={"n": 1})["taskId"]
    poll(lambda: session.result("tasks/get", {"taskId": task_id}), lambda t: t["state"] == "RUNNING", "task running")
    cancelled = session.result("tasks/cancel", {"taskId": task_id})
    assert cancelled["state"] == "CANCELLED" and cancelled["status"] == "cancelled", cancelled
    sleeper.wait_call("cancelled", n=1)
    assert result_of(session, task_id)["error"]["code"] == -32014

    started = time.monotonic()
    task_id = submit(session, taskType="nap", taskData={"n": 2}, timeout=0.5, maxRetries=0)["taskId"]
    reply = result_of(session, task_id)
    assert reply["error"]["code"] == -32013 and reply["error"]["data"]["state"] == "TIMEOUT", reply
    assert 0.4 < time.monotonic() - started < 5
    sleeper.wait_call("cancelled", n=2)
    poll(lambda: session.result("agents/get", {"agentId": sleeper.id}), lambda s: s["inFlight"] == 0, "slots freed")


def test_a_waiting_task_goes_to_an_agent_back_from_maintenance(start_gateway, agent):
    gw = start_gateway("tcp")
    worker = agent(gw.tcp.url, "maintained", "job")
    session = RpcSession.connect(gw.tcp)
    session.result("agents/setState", {"agentId": worker.id, "state": "MAINTENANCE"})
    task_id = submit(session, taskType="job", taskData={"n": 1})["taskId"]
    time.sleep(0.3)
    assert session.result("tasks/get", {"taskId": task_id})["state"] == "PENDING"
    session.result("agents/setState", {"agentId": worker.id, "state": "IDLE"})
    reply = result_or_cancel(session, task_id, timeout=5)
    assert reply.get("result", {}).get("structuredContent", {}).get("n") == 1, reply


def test_a_waiting_task_goes_to_a_new_instance(start_gateway, agent):
    gw = start_gateway("tcp")
    agent(gw.tcp.url, "growing", "job", label="first", delay=30, max_concurrency=1)
    session = RpcSession.connect(gw.tcp)
    busy = submit(session, taskType="job", taskData={"n": 1})["taskId"]
    poll(lambda: session.result("tasks/get", {"taskId": busy}), lambda t: t["state"] == "RUNNING", "first task running")
    waiting = submit(session, taskType="job", taskData={"n": 2})["taskId"]
    agent(gw.tcp.url, "growing", "job", label="second")
    reply = result_or_cancel(session, waiting, timeout=5)
    assert reply.get("result", {}).get("structuredContent", {}).get("agent") == "second", reply


# --------------------------------------------------------------------------- scatter-gather and pipelines


def test_scatter_with_a_slow_and_a_failing_agent(start_gateway, agent):
    gw = start_gateway("tcp")
    fast = agent(gw.tcp.url, "panel", "vote", label="fast")
    slow = agent(gw.tcp.url, "panel", "vote", label="slow", delay=6)
    failing = agent(gw.tcp.url, "panel", "vote", label="failing", fail_rate=1.0, fail_with="error")
    session = RpcSession.connect(gw.tcp)

    started = time.monotonic()
    gathered = session.result("tasks/scatter", {"tool": "vote", "arguments": {"text": "q"}, "timeout": 1})
    assert 0.9 < time.monotonic() - started < 2.9, "answered at the scatter's timeout, not the slow agent's pace"
    by_agent = {r["agentId"]: r for r in gathered["results"]}
    assert set(by_agent) == {fast.id, slow.id, failing.id}
    assert by_agent[fast.id]["status"] == "ok" and by_agent[fast.id]["result"]["structuredContent"]["text"] == "fast:q"
    assert by_agent[failing.id]["status"] == "error" and isinstance(by_agent[failing.id]["error"], str)
    assert by_agent[slow.id]["status"] == "timeout" and "result" not in by_agent[slow.id]
    assert {k: gathered[k] for k in ("aggregation", "targets", "succeeded", "quorum", "quorumMet", "complete")} == \
        {"aggregation": "all", "targets": 3, "succeeded": 1, "quorum": 3, "quorumMet": False, "complete": False}
    slow.wait_call("cancelled")

    started = time.monotonic()
    first = session.result("tasks/scatter", {"tool": "vote", "arguments": {"text": "r"}, "aggregation": "first", "timeout": 10})
    assert time.monotonic() - started < 2, "first answers with the first success"
    assert first["agentId"] == fast.id and first["result"]["structuredContent"]["text"] == "fast:r", first
    assert first["quorumMet"] is True and first["succeeded"] == 1, first
    poll(lambda: len([c for c in slow.calls() if c[2] == "cancelled"]), lambda k: k == 2, "the slow agent's call cancelled")

    majority = session.result("tasks/scatter", {"tool": "vote", "arguments": {"text": "s"}, "aggregation": "majority",
                                                "quorum": 1, "timeout": 1})
    assert majority["result"]["structuredContent"]["text"] == "fast:s" and majority["votes"] == 1, majority
    assert majority["majority"] is False and majority["quorumMet"] is True and majority["complete"] is False, majority
    poll(lambda: session.result("agents/get", {"agentId": slow.id}), lambda s: s["inFlight"] == 0, "slow agent's slots freed")


def test_losing_a_first_race_is_not_a_failure(start_gateway, agent):
    """With aggregation first the slower targets are cancelled: that says nothing against them."""
    gw = start_gateway("tcp")
    fast = agent(gw.tcp.url, "racers", "vote", label="fast")
    steady = agent(gw.tcp.url, "racers", "vote", label="steady", delay=0.3)
    session = RpcSession.connect(gw.tcp)
    targets = []
    for _ in range(6):
        first = session.result("tasks/scatter", {"tool": "vote", "aggregation": "first", "timeout": 5})
        assert first["agentId"] == fast.id, first
        targets.append(first["targets"])
    status = session.result("agents/get", {"agentId": steady.id})
    assert targets == [2] * 6, (targets, status["circuit"], "the steady agent was left out after losing races")
    assert status["circuit"]["state"] == "closed", status["circuit"]
    assert status["performanceMetrics"]["tasksFailed"] == 0, status["performanceMetrics"]


def test_pipeline_across_two_agents(start_gateway, agent):
    gw = start_gateway("tcp")
    extractor = agent(gw.tcp.url, "extractor", "extract")
    summarizer = agent(gw.tcp.url, "summarizer", "summarize")
    session = RpcSession.connect(gw.tcp)

    done = session.result("tasks/pipeline", {"stages": [
        {"tool": "extract", "arguments": {"text": "doc", "n": 1}},
        {"tool": "summarize", "arguments": {"text": "${previous.text}!", "n": 2}},
        {"tool": "extract", "arguments": {"text": "[${previous.text}]", "n": 3}}]})
    assert [(s["stage"], s["tool"], s["agentId"]) for s in done["stages"]] == \
        [(0, "extract", extractor.id), (1, "summarize", summarizer.id), (2, "extract", extractor.id)]
    assert [s["result"]["structuredContent"]["text"] for s in done["stages"]] == \
        ["extractor:doc", "summarizer:extractor:doc!", "extractor:[summarizer:extractor:doc!]"]
    assert done["result"] == done["stages"][-1]["result"]
    assert all(s["durationMs"] >= 0 for s in done["stages"])

    failed = session.call("tasks/pipeline", {"stages": [
        {"tool": "extract", "arguments": {"text": "doc", "n": 4}},
        {"tool": "summarize", "arguments": {"fail": True, "n": 5}},
        {"tool": "extract", "arguments": {"n": 6}}]})
    error = failed["error"]
    assert error["code"] == -32014, failed
    assert error["data"]["stage"] == 1 and error["data"]["tool"] == "summarize", error
    assert isinstance(error["data"]["reason"], str) and error["data"]["error"] is None, error
    assert [s["stage"] for s in error["data"]["completed"]] == [0], error
    session.result("ping")
    assert [c[1] for c in extractor.calls()] == [1, 3, 4], "no stage after the failing one ran"
