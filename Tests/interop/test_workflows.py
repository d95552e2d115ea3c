"""Workflows end to end (chapter 11): the example trading workflow against the example trading
agent (a real stdio MCP server the gateway spawns), pausing for a person's approval, surviving a
gateway killed with SIGKILL in the middle, and finishing after the approval.

The gateway keeps workflow state in a journal under `workflows.stateDirectory`; the restarted
gateway resumes the execution where it stopped, without running the completed steps again.
Waiting: an execution's progress is polled with a bounded loop (`workflows/status`), or awaited
as the events the executor publishes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sbwire import REPO, RpcSession

WORKFLOW = REPO / "examples" / "workflows" / "signal-to-order.yaml"
TRADING_AGENT = REPO / "examples" / "agents" / "trading_agent.py"


def until(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "agents:\n"
        f"  trading: {{command: {sys.executable}, args: [{TRADING_AGENT}], instances: 1, maxConcurrency: 16}}\n"
        "workflows:\n"
        f"  stateDirectory: {tmp_path / 'state'}\n"
        f"  definitions: [{WORKFLOW}]\n")
    return config


def start(start_gateway, config: Path):
    gateway = start_gateway("tcp", extra=["--config", str(config)])
    rpc = RpcSession.connect(gateway.tcp)
    until(lambda: "market_signal" in {t["name"] for t in rpc.result("tools/list")["tools"]}, "the trading agent's tools")
    return gateway, rpc


def test_the_trading_workflow_pauses_for_approval_survives_a_kill_and_completes(start_gateway, tmp_path):
    config = write_config(tmp_path)
    gateway, rpc = start(start_gateway, config)
    stored = rpc.result("workflows/get", {"workflowName": "signal-to-order"})
    assert stored["version"] == "1.0.0"

    # A threshold below any score and one share: the decision is to trade, within limits.
    execution = rpc.result("workflows/execute", {"workflowName": "signal-to-order",
                                                 "inputs": {"symbol": "NVDA", "quantity": 1, "threshold": -2}})
    execution_id = execution["executionId"]
    waiting = until(lambda: (s := rpc.result("workflows/status", {"executionId": execution_id}))["status"] == "WAITING_APPROVAL" and s,
                    "the execution to wait for the trader")
    assert waiting["currentSteps"] == ["sign_off"]
    steps = waiting["stepResults"]
    for step in ("momentum", "mean_reversion", "risk"):
        assert steps[step]["status"] == "COMPLETED", steps[step]
    assert steps["no_trade"]["status"] == "SKIPPED"
    assert "order" not in steps or steps["order"]["status"] not in ("RUNNING", "COMPLETED"), "no order before the approval"
    before = {step: steps[step] for step in ("momentum", "mean_reversion", "risk")}

    # The gateway dies without a word; a new one on the same state directory resumes.
    gateway.kill()
    rpc.close()
    gateway, rpc = start(start_gateway, config)
    resumed = until(lambda: (s := rpc.result("workflows/status", {"executionId": execution_id}))["status"] == "WAITING_APPROVAL" and s,
                    "the resumed execution to wait for the trader again")
    for step, record in before.items():
        assert resumed["stepResults"][step] == record, f"{step} was not run again"

    topic = f"workflows.signal-to-order.{execution_id}"
    rpc.result("events/subscribe", {"topic": topic})
    refused = rpc.call("workflows/approve", {"executionId": execution_id, "stepId": "momentum", "approved": True, "by": "head-trader"})
    assert refused["error"]["code"] == -32602, "only a waiting approval step can be decided"
    rpc.result("workflows/approve", {"executionId": execution_id, "stepId": "sign_off", "approved": True,
                                     "by": "head-trader", "comment": "go"})
    done = until(lambda: (s := rpc.result("workflows/status", {"executionId": execution_id}))["status"] in
                 ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT") and s, "the execution to finish")
    assert done["status"] == "COMPLETED", done
    order = done["stepResults"]["order"]
    assert order["status"] == "COMPLETED" and order["result"]["symbol"] == "NVDA", order
    approval = done["stepResults"]["sign_off"]
    assert approval["status"] == "COMPLETED" and approval["approval"]["decidedBy"] == "head-trader", approval
    note = rpc.wait_notification("notifications/events/message")
    assert note["params"]["topic"] == topic
    rpc.close()


def test_a_rejected_approval_places_no_order(start_gateway, tmp_path):
    gateway, rpc = start(start_gateway, write_config(tmp_path))
    execution_id = rpc.result("workflows/execute", {"workflowName": "signal-to-order",
                                                    "inputs": {"symbol": "MSFT", "quantity": 1, "threshold": -2}})["executionId"]
    until(lambda: rpc.result("workflows/status", {"executionId": execution_id})["status"] == "WAITING_APPROVAL", "the approval")
    rpc.result("workflows/approve", {"executionId": execution_id, "stepId": "sign_off", "approved": False, "by": "risk-officer"})
    done = until(lambda: (s := rpc.result("workflows/status", {"executionId": execution_id}))["status"] not in
                 ("PENDING", "RUNNING", "WAITING_APPROVAL") and s, "the execution to end")
    assert done["stepResults"].get("order", {}).get("status") != "COMPLETED", done
    rpc.close()


def test_an_event_published_by_a_client_starts_the_workflow_that_listens_for_it(start_gateway, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "agents:\n"
        f"  trading: {{command: {sys.executable}, args: [{TRADING_AGENT}], instances: 1, maxConcurrency: 16}}\n"
        "workflows:\n"
        f"  definitions: [{REPO / 'examples' / 'workflows' / 'post-trade-risk.yaml'}]\n")
    gateway, rpc = start(start_gateway, config)
    rpc.result("events/subscribe", {"pattern": "workflows.post-trade-risk.*"})
    delivered = rpc.result("events/publish", {"topic": "orders.filled", "data": {"symbol": "AAPL", "side": "buy", "quantity": 10}})
    assert delivered["delivered"] == 0, "no subscriber of orders.filled: the trigger is not a subscription"
    note = rpc.wait_notification("notifications/events/message")
    execution_id = note["params"]["data"]["executionId"]
    done = until(lambda: (s := rpc.result("workflows/status", {"executionId": execution_id}))["status"] not in
                 ("PENDING", "RUNNING") and s, "the triggered execution to settle")
    assert done["triggerType"] == "event"
    assert done["triggerData"] == {"topic": "orders.filled", "data": {"symbol": "AAPL", "side": "buy", "quantity": 10}}
    assert done["stepResults"]["check"]["status"] == "COMPLETED"
    assert done["stepResults"]["check"]["result"]["symbol"] == "AAPL"
    rpc.close()
