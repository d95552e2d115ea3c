"""The console's workflow views and its workflow builder (Sources/Console/Assets/js/workflows.js,
builder.js, graph.js, yaml.js), used in headless Chromium the way a person uses them: running a
workflow from its definition, deciding its approval from the Approvals list and watching the
execution finish; seeing an approval without the right to decide it; building a workflow by
dragging steps and ports, saving and running it; reading the gateway's diagnostics on the step
they concern; and opening every example definition in the builder and saving it again unchanged
in meaning.

The gateway runs examples/agents/trading_agent.py, so workflows call real tools. It is driven over
TCP alongside, as another client would, to set things up and to check what the page did.
"""

from __future__ import annotations

import hashlib
import json
import sys

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from console_browser import browser, browser_errors, css, log_in, screenshot  # noqa: F401
from sbwire import REPO, RpcSession

TRADING_AGENT = REPO / "examples" / "agents" / "trading_agent.py"
EXAMPLES = sorted((REPO / "examples" / "workflows").glob("*.yaml"))
FORBIDDEN = -32005
TRADER_KEY = "console-head-trader-key-4c1d0e"   # admin, and the approver the workflow names
DESK_KEY = "console-desk-key-2d77c8"            # runs workflows in tenant acme
VIEWER_KEY = "console-viewer-key-93ab51"        # the built-in viewer role in tenant acme: reads, decides nothing
OUR_MODULES = ("workflows.js", "builder.js", "graph.js", "yaml.js")

QUICK_TRADE = """\
workflowName: quick-trade
version: "1.0.0"
inputs:
  symbol: {type: string}
steps:
  - id: signal
    type: agent_task
    tool: market_signal
    input: {symbol: "${inputs.symbol}"}
  - id: sign_off
    type: human_approval
    dependencies: [signal]
    message: "Buy 1 ${inputs.symbol} at ${steps.signal.result.price}?"
    approvers: [head-trader]
    timeout: 15m
  - id: order
    type: agent_task
    tool: place_order
    dependencies: [sign_off]
    input: {symbol: "${inputs.symbol}", side: buy, quantity: 1}
outputs:
  orderId: steps.order.result.orderId
"""

# A cycle (fetch waits for publish, publish for fetch) and a misspelt member (tol for tool).
BROKEN = """\
workflowName: loops-and-typos
version: "1"
steps:
  - id: fetch
    type: agent_task
    tool: market_signal
    input: {symbol: NVDA}
    dependencies: [publish]
  - id: publish
    type: agent_task
    tol: report
    input: {title: marks}
    dependencies: [fetch]
"""


# --------------------------------------------------------------------------- the gateway


def api_key(name: str, key: str, roles: list[str], **more) -> dict:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "roles": roles, **more}


def waiting_for_approval(rpc, execution_id: str, timeout: float = 30.0) -> None:
    """Returns once the execution waits for a decision: told by its events (11.9), subscribed
    before the execution is asked about, so that no transition falls between the two."""
    seen = rpc.count("notifications/events/message")
    rpc.result("events/subscribe", {"pattern": f"workflows.*.{execution_id}"})
    if rpc.result("workflows/status", {"executionId": execution_id})["status"] == "WAITING_APPROVAL":
        return
    rpc.wait_notification(
        "notifications/events/message", after=seen, timeout=timeout,
        match=lambda n: n["params"]["data"].get("event") == "execution" and n["params"]["data"].get("status") == "WAITING_APPROVAL"
        and n["params"]["data"].get("executionId") == execution_id)


def start(start_gateway, tmp_path):
    """A gateway with the trading agent and API keys, and a TCP session logged in as the trader."""
    config = {
        "agents": {"trading": {"command": sys.executable, "args": [str(TRADING_AGENT)], "instances": 1, "maxConcurrency": 16}},
        "auth": {"anonymous": "none",
                 "apiKeys": [api_key("head-trader", TRADER_KEY, ["admin"]),
                             api_key("desk", DESK_KEY, ["desk"], tenant="acme"),
                             api_key("vera", VIEWER_KEY, ["viewer"], tenant="acme")],
                 "roles": {"desk": {"allow": ["workflows/*", "tools/*"]}}},
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    gateway = start_gateway("http", "tcp", extra=["--config", str(path)])
    rpc = RpcSession.connect(gateway.tcp)
    rpc.result("auth/authenticate", {"token": TRADER_KEY})
    # The first tools/list waits for the agents still starting (chapter 07, 7.3.5), as a host's does.
    assert "place_order" in {tool["name"] for tool in rpc.result("tools/list")["tools"]}
    return gateway, rpc


# --------------------------------------------------------------------------- the page


def until(driver, condition, seconds: float = 20, message: str = ""):
    """Waits until `condition()` is truthy and returns it; elements redrawn meanwhile are read again."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,)).until(lambda _: condition(), message)


def node_statuses(driver) -> dict:
    """step id → the state its node in the execution graph shows."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-test=step-node]')]"
        ".map((node) => [node.dataset.stepId, node.dataset.stepStatus]))")


def shown_status(driver) -> str | None:
    return driver.execute_script(
        "const status = document.querySelector('[data-test=execution-status]'); return status ? status.textContent : null")


def builder_nodes(driver) -> dict:
    """step id → {x, y, problem, tooltip} of every node on the builder's canvas."""
    return driver.execute_script("""
        return Object.fromEntries([...document.querySelectorAll('[data-test=builder-node]')].map((node) => {
          const [x, y] = node.getAttribute('transform').match(/-?[0-9.]+/g).map(Number);
          return [node.dataset.stepId, {x, y, problem: node.classList.contains('has-problem'),
                                        tooltip: node.querySelector('title').textContent}];
        }));""")


def problems(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('[data-test=builder-problem]')]"
        ".map((item) => ({step: item.dataset.stepId || null, path: item.dataset.path, text: item.textContent}))")


def edge(driver, source: str, target: str):
    found = driver.find_elements(By.CSS_SELECTOR, f'[data-test=builder-edge][data-from="{source}"][data-to="{target}"][data-kind=dependency]')
    return found[0] if found else None


def set_field(driver, name: str, value: str, commit: bool = False) -> None:
    """Types into a form field as a person does: select what is there, type over it."""
    field = css(driver, f"[data-test=field-{name}]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(value)
    if commit:
        field.send_keys(Keys.TAB)


def select_node(driver, step_id: str) -> None:
    settled(driver)
    css(driver, f'[data-test=builder-node][data-step-id="{step_id}"]').click()
    until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, f'[data-test=builder-step-form][data-step-id="{step_id}"]'))


def settled(driver) -> str:
    """The builder's verdict once the gateway has checked the last change (the canvas is redrawn
    when it answers, so what is found on it before then may be replaced)."""
    return until(driver, lambda: (text := css(driver, "[data-test=builder-validity]").text) != "Checking…" and text)


def connect(driver, source: str, target: str) -> None:
    """Drags from the output port of `source` to the input port of `target` (pointer events)."""
    settled(driver)
    out_port = css(driver, f'[data-test=builder-node][data-step-id="{source}"] [data-test=port-out]')
    in_port = css(driver, f'[data-test=builder-node][data-step-id="{target}"] [data-test=port-in]')
    ActionChains(driver).click_and_hold(out_port).move_by_offset(12, 6).move_to_element(in_port).release().perform()
    until(driver, lambda: edge(driver, source, target), message=f"no edge {source} → {target} after dragging its ports")


def html5_drop(driver, palette_item, canvas, x: int, y: int) -> None:
    """The events a browser fires when a palette item is dragged and dropped at (x, y) of the
    canvas: dragstart on the item, dragenter/dragover/drop on the canvas (one DataTransfer
    throughout, as in a real drag), dragend on the item."""
    driver.execute_script("""
        const [item, canvas, x, y] = arguments;
        const box = canvas.getBoundingClientRect();
        const at = {clientX: box.left + x, clientY: box.top + y};
        const data = new DataTransfer();
        const fire = (target, type, point = {}) => target.dispatchEvent(
          new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data, ...point}));
        fire(item, 'dragstart');
        fire(canvas, 'dragenter', at);
        fire(canvas, 'dragover', at);
        fire(canvas, 'drop', at);
        fire(item, 'dragend');
    """, palette_item, canvas, x, y)


def run_in_page(driver, method: str, params: dict) -> dict:
    """Calls the gateway through the page's own connection, as the logged-in principal."""
    return driver.execute_async_script("""
        const [method, params, done] = arguments;
        window.switchboardConsole.gw.call(method, params).then(
          (result) => done({result}),
          (error) => done({error: {code: error.code, message: error.message, data: error.data}}));
    """, method, params)


def our_errors(driver) -> list[str]:
    return [message for message in browser_errors(driver) if any(module in message for module in OUR_MODULES)]


def open_workflows_tab(driver, tab: str) -> None:
    css(driver, "[data-test=nav-workflows]").click()
    css(driver, f"[data-test=workflows-tab-{tab}]").click()
    css(driver, f"[data-test=workflows-{tab}]")


def open_a_waiting_execution(driver, gateway, rpc, symbol: str) -> str:
    """Starts quick-trade for `symbol`, waits for its approval, logs in as the trader and opens
    the execution's page from the executions list; returns its id."""
    rpc.result("workflows/create", {"source": QUICK_TRADE})
    execution_id = rpc.result("workflows/execute", {"workflowName": "quick-trade", "inputs": {"symbol": symbol}})["executionId"]
    waiting_for_approval(rpc, execution_id)
    log_in(driver, gateway, TRADER_KEY)
    open_workflows_tab(driver, "executions")
    css(driver, f'[data-test=execution-row][data-execution-id="{execution_id}"]').click()
    return execution_id


# --------------------------------------------------------------------------- tests


def test_an_approval_decided_from_the_approvals_list_lets_the_execution_finish_before_our_eyes(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    rpc.result("workflows/create", {"source": QUICK_TRADE})
    log_in(browser, gateway, TRADER_KEY)
    browser.execute_script("window.sameDocument = true")

    # Run it from its definition, with the inputs form its declared input gives.
    open_workflows_tab(browser, "definitions")
    css(browser, '[data-test=definition-row][data-workflow="quick-trade"] [data-test=run-workflow]').click()
    css(browser, "[data-test=run-input-symbol]").send_keys("NVDA")
    css(browser, "[data-test=run-submit]").click()
    until(browser, lambda: "#/workflows/executions/" in browser.current_url, message="the run did not open its execution")
    execution_id = browser.current_url.rsplit("/", 1)[1]
    until(browser, lambda: node_statuses(browser).get("sign_off") == "WAITING_APPROVAL", seconds=30)
    assert node_statuses(browser)["signal"] == "COMPLETED"
    assert node_statuses(browser)["order"] == "NOT_STARTED"
    assert shown_status(browser) == "WAITING_APPROVAL"

    # The approval, in the list of every approval waiting.
    open_workflows_tab(browser, "approvals")
    card = f'[data-test=approval][data-execution-id="{execution_id}"][data-step-id="sign_off"]'
    price = rpc.result("workflows/status", {"executionId": execution_id})["stepResults"]["signal"]["result"]["price"]
    assert css(browser, f"{card} [data-test=approval-message]").text == f"Buy 1 NVDA at {price}?"
    assert css(browser, f"{card} [data-test=approval-approvers]").text == "head-trader"
    screenshot(browser, "workflow-approvals")
    css(browser, f"{card} [data-test=approval-comment]").send_keys("within limits")
    css(browser, f"{card} [data-test=approve]").click()
    until(browser, lambda: "Approved by head-trader" in css(browser, card).text)

    # Its page follows it to the end: every step completed, the decision recorded.
    css(browser, f"{card} [data-test=approval-execution]").click()
    until(browser, lambda: shown_status(browser) == "COMPLETED", seconds=30)
    until(browser, lambda: node_statuses(browser) == {"signal": "COMPLETED", "sign_off": "COMPLETED", "order": "COMPLETED"})
    decision = css(browser, '[data-test=step-record][data-step-id="sign_off"] [data-test=approval-decision]').text
    assert "approved by head-trader" in decision and "within limits" in decision
    assert browser.execute_script("return window.sameDocument === true"), "the page was reloaded"
    stored = rpc.result("workflows/status", {"executionId": execution_id})
    assert stored["status"] == "COMPLETED"
    assert stored["stepResults"]["sign_off"]["approval"]["decidedBy"] == "head-trader"
    assert stored["stepResults"]["sign_off"]["approval"]["comment"] == "within limits"
    assert f'"orderId": "{stored["outputs"]["orderId"]}"' in css(browser, "[data-test=execution-outputs]").text
    # What the page lists of the execution's life includes the decision.
    timeline = css(browser, "[data-test=execution-timeline]").text
    assert "sign_off approved by head-trader" in timeline and "execution completed" in timeline
    screenshot(browser, "workflow-execution")
    assert our_errors(browser) == []


def test_an_execution_page_follows_the_execution_from_its_events(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    execution_id = open_a_waiting_execution(browser, gateway, rpc, "AAPL")
    until(browser, lambda: node_statuses(browser).get("sign_off") == "WAITING_APPROVAL")
    css(browser, "[data-test=execution-live]")
    # The page has subscribed by the time it shows the live note; the decision comes from elsewhere.
    until(browser, lambda: browser.execute_script(
        "return [...window.switchboardConsole.gw.subscriptions.values()].some((s) => s.subscriptionId && s.pattern.endsWith(arguments[0]))",
        execution_id))
    rpc.result("workflows/approve", {"executionId": execution_id, "stepId": "sign_off", "approved": True})
    until(browser, lambda: shown_status(browser) == "COMPLETED")
    assert node_statuses(browser) == {"signal": "COMPLETED", "sign_off": "COMPLETED", "order": "COMPLETED"}
    events = css(browser, "[data-test=execution-events]").text
    assert "step sign_off completed" in events and "step order completed" in events and "execution completed" in events
    # The list of executions has followed too.
    open_workflows_tab(browser, "executions")
    until(browser, lambda: css(browser, f'[data-test=execution-row][data-execution-id="{execution_id}"] [data-test=execution-status]').text == "COMPLETED")
    assert our_errors(browser) == []


def test_an_execution_cancelled_from_its_page_ends_cancelled_and_the_list_filters_by_status(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    waiting = open_a_waiting_execution(browser, gateway, rpc, "VOD.L")
    until(browser, lambda: shown_status(browser) == "WAITING_APPROVAL")

    # Cancelling cannot be undone: the first click arms the button, the second cancels.
    css(browser, "[data-test=execution-cancel]").click()
    until(browser, lambda: "armed" in css(browser, "[data-test=execution-cancel]").get_attribute("class"))
    assert rpc.result("workflows/status", {"executionId": waiting})["status"] == "WAITING_APPROVAL"
    css(browser, "[data-test=execution-cancel]").click()
    until(browser, lambda: shown_status(browser) == "CANCELLED")
    assert node_statuses(browser) == {"signal": "COMPLETED", "sign_off": "CANCELLED", "order": "NOT_STARTED"}
    assert "cancelled by request" in css(browser, "[data-test=execution-error]").text
    assert browser.find_elements(By.CSS_SELECTOR, "[data-test=execution-cancel]") == [], "an ended execution has nothing to cancel"
    assert rpc.result("workflows/status", {"executionId": waiting})["status"] == "CANCELLED"

    # Another execution, waiting: the status filter shows one or the other.
    other = rpc.result("workflows/execute", {"workflowName": "quick-trade", "inputs": {"symbol": "BARC.L"}})["executionId"]
    waiting_for_approval(rpc, other)
    open_workflows_tab(browser, "executions")
    listed = lambda: {row.get_attribute("data-execution-id") for row in browser.find_elements(By.CSS_SELECTOR, "[data-test=execution-row]")}  # noqa: E731
    until(browser, lambda: listed() == {waiting, other})
    Select(css(browser, "[data-test=executions-filter-status]")).select_by_value("CANCELLED")
    until(browser, lambda: listed() == {waiting})
    Select(css(browser, "[data-test=executions-filter-status]")).select_by_value("WAITING_APPROVAL")
    until(browser, lambda: listed() == {other})
    assert our_errors(browser) == []


def test_a_viewer_sees_an_approval_without_the_buttons_and_the_gateway_refuses_it_the_decision(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    rpc.result("workflows/create", {"source": (REPO / "examples" / "workflows" / "signal-to-order.yaml").read_text()})
    # The desk runs it in its tenant, the one the viewer belongs to (an execution is its tenant's);
    # a threshold below any score and one share: the decision is to trade, within limits.
    desk = RpcSession.connect(gateway.tcp)
    desk.result("auth/authenticate", {"token": DESK_KEY})
    execution_id = desk.result("workflows/execute", {"workflowName": "signal-to-order",
                                                     "inputs": {"symbol": "MSFT", "quantity": 1, "threshold": -2}})["executionId"]
    waiting_for_approval(rpc, execution_id)

    log_in(browser, gateway, VIEWER_KEY)
    open_workflows_tab(browser, "approvals")
    card = f'[data-test=approval][data-execution-id="{execution_id}"][data-step-id="sign_off"]'
    assert css(browser, f"{card} [data-test=approval-message]").text.startswith("Buy 1 MSFT at about ")
    assert css(browser, f"{card} [data-test=approval-approvers]").text == "head-trader, risk-officer"
    assert css(browser, f"{card} [data-test=approval-not-allowed]").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "[data-test=approve], [data-test=reject], [data-test=approval-comment]") == []

    # Nor on the execution's page: no decision, no cancel.
    css(browser, f"{card} [data-test=approval-execution]").click()
    until(browser, lambda: node_statuses(browser).get("sign_off") == "WAITING_APPROVAL")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-test=approve], [data-test=reject], [data-test=execution-cancel]") == []
    # The graph has the states of the steps that ran, those skipped, and those inside the parallel step.
    statuses = node_statuses(browser)
    assert statuses["signals"] == statuses["decide"] == statuses["risk"] == statuses["within_limits"] == "COMPLETED"
    assert statuses["no_trade"] == statuses["limit_breach"] == "SKIPPED" and statuses["order"] == "NOT_STARTED"
    nested = browser.execute_script("return [...document.querySelectorAll('[data-test=nested-step]')].map((n) => n.dataset.stepId + ' ' + n.dataset.stepStatus)")
    assert nested == ["momentum COMPLETED", "mean_reversion COMPLETED", "sentiment COMPLETED"]
    css(browser, "[data-test=zoom-fit]").click()
    screenshot(browser, "workflow-execution-waiting")

    # Asked anyway, through the page's own connection, the gateway says no and nothing changes.
    answer = run_in_page(browser, "workflows/approve", {"executionId": execution_id, "stepId": "sign_off", "approved": True})
    assert answer.get("error", {}).get("code") == FORBIDDEN, answer
    assert rpc.result("workflows/status", {"executionId": execution_id})["status"] == "WAITING_APPROVAL"
    assert our_errors(browser) == []


def test_a_workflow_built_by_dragging_steps_and_ports_is_saved_run_and_completes(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    log_in(browser, gateway, TRADER_KEY)
    css(browser, "[data-test=nav-builder]").click()
    canvas = css(browser, "[data-test=builder-canvas]")
    set_field(browser, "workflowName", "desk-check")
    set_field(browser, "version", "1")

    # A drag from the palette with the mouse, moved the way a hand moves it: Chromium starts an
    # HTML5 drag once the pointer has moved with the button down, so a press and a jump to the
    # drop point in the same instant (drag_and_drop) sometimes starts none on a busy machine.
    palette = css(browser, "[data-test=palette-agent_task]")
    (ActionChains(browser).click_and_hold(palette).move_by_offset(6, 6).pause(0.05).move_by_offset(6, 6).pause(0.05)
     .move_to_element(canvas).pause(0.05).release(canvas).perform())
    until(browser, lambda: "agent_task_1" in builder_nodes(browser), message="the dragged step did not land")
    dropped = builder_nodes(browser)["agent_task_1"]
    assert abs(dropped["x"] + 98 - canvas.size["width"] / 2) < 40, "the step lands where it was dropped"
    set_field(browser, "id", "signal", commit=True)
    until(browser, lambda: "signal" in builder_nodes(browser))
    set_field(browser, "tool", "market_signal")
    set_field(browser, "input", '{"symbol": "NVDA"}')

    # ... the events of a drag dispatched as the browser dispatches them...
    html5_drop(browser, css(browser, "[data-test=palette-agent_task]"), canvas, 520, 90)
    until(browser, lambda: "agent_task_1" in builder_nodes(browser), message="the second drop did not land")
    assert builder_nodes(browser)["agent_task_1"]["y"] < dropped["y"]
    set_field(browser, "id", "risk", commit=True)
    until(browser, lambda: "risk" in builder_nodes(browser))
    set_field(browser, "tool", "risk_check")
    set_field(browser, "input", '{"symbol": "NVDA", "side": "buy", "quantity": 1}')

    # ... and a click, for whoever does not drag.
    css(browser, "[data-test=palette-agent_task]").click()
    until(browser, lambda: "agent_task_1" in builder_nodes(browser))
    set_field(browser, "id", "report", commit=True)
    until(browser, lambda: "report" in builder_nodes(browser))
    set_field(browser, "tool", "report")
    set_field(browser, "input", '{"title": "NVDA checked: ${steps.risk.result.summary}"}')

    connect(browser, "signal", "risk")
    connect(browser, "risk", "report")
    until(browser, lambda: css(browser, "[data-test=builder-validity]").text == "Valid: 3 steps",
          message="the gateway did not find the built workflow valid")
    assert problems(browser) == []
    yaml = css(browser, "[data-test=builder-yaml]").get_attribute("textContent")
    assert "workflowName: desk-check" in yaml and "tool: risk_check" in yaml
    # Arranged, the steps stand in the order they run, left to right.
    css(browser, "[data-test=builder-arrange]").click()
    until(browser, lambda: (nodes := builder_nodes(browser))["signal"]["x"] < nodes["risk"]["x"] < nodes["report"]["x"])
    select_node(browser, "risk")
    screenshot(browser, "workflow-builder")
    # A node dragged elsewhere stays there (positions are the console's, not the definition's).
    arranged = builder_nodes(browser)["report"]
    ActionChains(browser).click_and_hold(css(browser, '[data-test=builder-node][data-step-id="report"]')).move_by_offset(10, 60) \
        .move_by_offset(0, 60).release().perform()
    until(browser, lambda: builder_nodes(browser)["report"]["y"] >= arranged["y"] + 100)
    moved = builder_nodes(browser)["report"]
    assert css(browser, "[data-test=builder-yaml]").get_attribute("textContent") == yaml, "moving a node changes no member"

    css(browser, "[data-test=builder-save]").click()
    until(browser, lambda: "Saved desk-check 1" in css(browser, "[data-test=builder-save-status]").text)
    stored = rpc.result("workflows/get", {"workflowName": "desk-check", "version": "1"})
    assert stored["source"] == yaml, "what is stored is the YAML the builder showed"
    steps = {step["id"]: step for step in stored["definition"]["steps"]}
    assert steps["signal"] == {"id": "signal", "type": "agent_task", "tool": "market_signal", "input": {"symbol": "NVDA"}}
    assert steps["risk"]["dependencies"] == ["signal"] and steps["report"]["dependencies"] == ["risk"]

    css(browser, "[data-test=builder-run]").click()
    until(browser, lambda: "#/workflows/executions/" in browser.current_url, message="Run did not open the execution")
    until(browser, lambda: shown_status(browser) == "COMPLETED", seconds=30)
    until(browser, lambda: node_statuses(browser) == {"signal": "COMPLETED", "risk": "COMPLETED", "report": "COMPLETED"})
    execution = rpc.result("workflows/status", {"executionId": browser.current_url.rsplit("/", 1)[1]})
    assert execution["workflowName"] == "desk-check" and execution["status"] == "COMPLETED"
    assert execution["stepResults"]["report"]["result"]["reportId"]

    # Opened again, the workflow has its nodes where they were left.
    open_workflows_tab(browser, "definitions")
    css(browser, '[data-test=definition-row][data-workflow="desk-check"] [data-test=edit-workflow]').click()
    until(browser, lambda: "report" in builder_nodes(browser))
    assert (builder_nodes(browser)["report"]["x"], builder_nodes(browser)["report"]["y"]) == (moved["x"], moved["y"])
    assert our_errors(browser) == []


def test_the_gateways_diagnostics_appear_on_the_steps_they_concern(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    log_in(browser, gateway, TRADER_KEY)
    css(browser, "[data-test=nav-builder]").click()
    css(browser, "[data-test=builder-import-toggle]").click()
    css(browser, "[data-test=builder-import]").send_keys(BROKEN)
    css(browser, "[data-test=builder-import-open]").click()

    until(browser, lambda: builder_nodes(browser).keys() == {"fetch", "publish"})
    until(browser, lambda: any("tol" in problem["text"] for problem in problems(browser)), message="no diagnostic for tol")
    listed = problems(browser)
    typo = [problem for problem in listed if '"tol"' in problem["text"]]
    assert typo and typo[0]["step"] == "publish", listed
    cycle = [problem for problem in listed if "cycle" in problem["text"]]
    assert cycle and cycle[0]["step"] in ("fetch", "publish"), listed
    nodes = builder_nodes(browser)
    assert nodes["publish"]["problem"] and 'unknown key "tol"' in nodes["publish"]["tooltip"]
    assert nodes[cycle[0]["step"]]["problem"]

    # Removing one dependency (select its arrow, press Delete) ends the cycle and its diagnostic.
    edge(browser, "publish", "fetch").click()
    css(browser, "[data-test=builder-selected-edge]")
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    until(browser, lambda: edge(browser, "publish", "fetch") is None)
    until(browser, lambda: not any("cycle" in problem["text"] for problem in problems(browser)))
    assert not builder_nodes(browser)["fetch"]["problem"]
    assert builder_nodes(browser)["publish"]["problem"], "the misspelt member is still there"

    # The step's JSON, corrected by hand, leaves nothing to report.
    select_node(browser, "publish")
    css(browser, "details.wf-raw summary").click()
    raw = css(browser, "[data-test=field-raw]")
    raw.send_keys(Keys.CONTROL, "a")
    raw.send_keys(Keys.DELETE)
    raw.send_keys(json.dumps({"id": "publish", "type": "agent_task", "tool": "report", "input": {"title": "marks"}, "dependencies": ["fetch"]}))
    css(browser, "[data-test=builder-raw-apply]").click()
    until(browser, lambda: css(browser, "[data-test=builder-validity]").text == "Valid: 2 steps")
    assert problems(browser) == [] and not builder_nodes(browser)["publish"]["problem"]

    # A dependency dragged back from publish to fetch closes the cycle again: the gateway says so.
    connect(browser, "publish", "fetch")
    until(browser, lambda: any("cycle" in problem["text"] for problem in problems(browser)))
    assert any(node["problem"] for node in builder_nodes(browser).values())

    # A file is opened the same way as pasted text.
    css(browser, "[data-test=builder-import-toggle]").click()
    # The file field itself is hidden behind its "Upload a file…" label, as file fields often are.
    browser.find_element(By.CSS_SELECTOR, "[data-test=builder-import-file]").send_keys(str(REPO / "examples" / "workflows" / "post-trade-risk.yaml"))
    until(browser, lambda: set(builder_nodes(browser)) == {"check", "breached", "alert", "hedge_approval", "hedge", "all_clear"})
    until(browser, lambda: css(browser, "[data-test=builder-validity]").text == "Valid: 6 steps")
    branches = browser.find_elements(By.CSS_SELECTOR, '[data-test=builder-edge][data-from="breached"][data-kind=then]')
    assert {element.get_attribute("data-to") for element in branches} == {"alert", "hedge_approval", "hedge"}
    assert our_errors(browser) == []


def test_every_example_opened_in_the_builder_and_saved_again_keeps_its_meaning(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    log_in(browser, gateway, TRADER_KEY)
    assert EXAMPLES, "examples/workflows has definitions"
    for path in EXAMPLES:
        created = rpc.result("workflows/create", {"source": path.read_text()})
        name, version = created["workflowName"], created["version"]
        open_workflows_tab(browser, "definitions")
        css(browser, f'[data-test=definition-row][data-workflow="{name}"] [data-test=edit-workflow]').click()
        until(browser, lambda: css(browser, "[data-test=field-workflowName]").get_attribute("value") == name)
        until(browser, lambda: css(browser, "[data-test=builder-validity]").text.startswith("Valid"), message=f"{path.name} is not valid in the builder")
        assert len(builder_nodes(browser)) == len(created["definition"]["steps"])

        # The version exists with another text (the file's): the gateway refuses, the builder offers the next one.
        css(browser, "[data-test=builder-save]").click()
        until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "[data-test=builder-bump-version]"),
              message=f"saving {name} {version} again was not refused")
        assert "version" in css(browser, "[data-test=builder-save-status]").text
        css(browser, "[data-test=builder-bump-version]").click()
        until(browser, lambda: css(browser, "[data-test=field-version]").get_attribute("value") == "1.0.1")
        css(browser, "[data-test=builder-save]").click()
        until(browser, lambda: f"Saved {name} 1.0.1" in css(browser, "[data-test=builder-save-status]").text)

        original = rpc.result("workflows/get", {"workflowName": name, "version": version})
        copy = rpc.result("workflows/get", {"workflowName": name, "version": "1.0.1"})
        assert copy["source"] != original["source"], "the builder wrote its own YAML"
        original_definition, copy_definition = dict(original["definition"]), dict(copy["definition"])
        assert original_definition.pop("version") == version and copy_definition.pop("version") == "1.0.1"
        assert copy_definition == original_definition, f"{path.name} changed its meaning in a round trip"
        assert copy["triggers"] == original["triggers"] and copy["stepCount"] == original["stepCount"]
    assert our_errors(browser) == []


def test_the_yaml_the_builder_writes_reads_back_as_the_same_document(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    log_in(browser, gateway, TRADER_KEY)
    awkward = ["yes", "No", "on", "OFF", "y", "null", "Null", "~", "true", "1.0", "1_000", "0x1F", "0o17", "1:30", "1e3",
               ".inf", "-.5", "2026-11-25", "- item", "#hash", "a #b", "a: b", "key:", "'single'", '"double"',
               " leading", "trailing ", "two\nlines", "tab\there", "\u2028separator", "ünïcödé", "emoji 🎉", "",
               "@at", "`tick", "%percent", "!tag", "&anchor", "*alias", "|pipe", ">fold", "[list]", "{map}", "?q",
               ",comma", "$${literal}", "back\\slash", "<<", "=", "-", "---", "...", "\u0085next", "\x7fdel", "\x01ctl"]
    document = {
        "workflowName": "awkward-strings",
        "version": "1",
        "description": "every string YAML could read as something else",
        "steps": [{
            "id": "echo",
            "type": "agent_task",
            "tool": "report",
            "input": {
                "title": "awkward",
                "values": awkward,
                "keys": {text: index for index, text in enumerate(awkward)},
                "numbers": [0, -1, 1.5, 1e21, 2.5e-8, 12345678901234],
                "empty": {"map": {}, "list": [], "null": None, "nested": [[], [{}], [[1, [2]]]]},
                "flags": [True, False],
            },
        }],
    }
    source = browser.execute_async_script("""
        const [document, done] = arguments;
        import('./js/yaml.js').then((module) => done(module.toYAML(document)), (error) => done('failed: ' + error));
    """, document)
    assert not source.startswith("failed"), source
    checked = rpc.result("workflows/validate", {"source": source})
    assert checked["valid"], checked["problems"]
    assert checked["definition"] == document


def test_a_definition_in_the_seeds_spelling_is_edited_where_its_members_are(start_gateway, tmp_path, browser):
    gateway, rpc = start(start_gateway, tmp_path)
    seed = {"workflowName": "book-marks", "version": "2",
            "definition": {"steps": [{"stepId": "marks", "stepType": "agent_task", "timeout": 30,
                                      "configuration": {"tool": "risk_check", "input": {}}},
                                     {"stepId": "publish", "stepType": "agent_task", "dependsOn": "marks",
                                      "configuration": {"taskType": "report", "taskData": {"title": "marks"}}}],
                           "triggers": [{"schedule": {"cron": "45 16 * * MON-FRI", "timezone": "Europe/London"}}]}}
    log_in(browser, gateway, TRADER_KEY)
    css(browser, "[data-test=nav-builder]").click()
    css(browser, "[data-test=builder-import-toggle]").click()
    css(browser, "[data-test=builder-import]").send_keys(json.dumps(seed, indent=2))
    css(browser, "[data-test=builder-import-open]").click()
    until(browser, lambda: set(builder_nodes(browser)) == {"marks", "publish"})
    assert edge(browser, "marks", "publish") is not None, "dependsOn is a dependency"
    assert settled(browser) == "Valid: 2 steps"

    select_node(browser, "publish")
    assert css(browser, "[data-test=field-tool]").get_attribute("value") == "report"
    set_field(browser, "tool", "market_signal")
    set_field(browser, "input", '{"symbol": "NVDA"}')
    until(browser, lambda: settled(browser) == "Valid: 2 steps")
    css(browser, "[data-test=builder-save]").click()
    until(browser, lambda: "Saved book-marks 2" in css(browser, "[data-test=builder-save-status]").text)
    stored = rpc.result("workflows/get", {"workflowName": "book-marks", "version": "2"})["definition"]
    expected = json.loads(json.dumps(seed))
    expected["definition"]["steps"][1]["configuration"] = {"taskType": "market_signal", "taskData": {"symbol": "NVDA"}}
    assert stored == expected, "the edits went where the members were, and nothing else changed"
    assert our_errors(browser) == []
