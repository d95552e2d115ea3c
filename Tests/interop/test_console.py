"""The browser console at /console/ (Sources/Console/Assets), used the way a person uses it: in
headless Chromium, typing a credential, clicking, and watching the page change as the gateway
does — agents joining and being drained, tasks queued and cancelled, events arriving, history
charted — without reloading. The gateway is driven over TCP alongside, as agents and clients
would.
"""

from __future__ import annotations

import hashlib
import json
import sys

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from console_browser import browser, browser_errors, console_url, css, log_in, screenshot  # noqa: F401 (browser: a fixture)
from sbwire import REPO, LineClient, RpcSession, exchange_all, jline, raise_nofile, req

TOOL_SERVER = REPO / "Tests" / "interop" / "agents" / "stdio_tool_server.py"
FORBIDDEN = -32005
ADMIN_KEY = "console-admin-key-0f3c9a"
VIEWER_KEY = "console-viewer-key-7be214"


def write_config(tmp_path, **sections) -> str:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(sections))
    return str(path)


def api_key(name: str, key: str, roles: list[str]) -> dict:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "roles": roles}


def spawned(tool: str, **options) -> dict:
    return {"command": sys.executable, "args": [str(TOOL_SERVER), "--tool", tool], **options}


def until(driver, condition, seconds: float = 15, message: str = ""):
    """Waits until `condition()` is truthy (WebDriverWait, polling), and returns its value. The
    page redraws rows as the gateway changes: an element read while it is replaced is read again."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,)).until(lambda _: condition(), message)


def rows(driver, test_hook: str):
    return driver.find_elements(By.CSS_SELECTOR, f"[data-test={test_hook}]")


def state_in_row(driver, row_selector: str) -> str | None:
    """The state a table row shows, read in one step (the row may be redrawn at any time)."""
    return driver.execute_script(
        "const cell = document.querySelector(arguments[0]); return cell ? cell.dataset.state : null",
        f"{row_selector} [data-state]")


def agent_state(driver, agent_id: str) -> str | None:
    return state_in_row(driver, f'[data-test=agent-row][data-agent-id="{agent_id}"]')


def task_state(driver, task_id: str) -> str | None:
    return state_in_row(driver, f'[data-test=task-row][data-task-id="{task_id}"]')


def confirm_click(driver, selector: str) -> None:
    """Clicks a two-step button: the first click arms it, the second does it."""
    button = css(driver, selector)
    button.click()
    until(driver, lambda: "armed" in css(driver, selector).get_attribute("class"))
    css(driver, selector).click()


def run_in_page(driver, method: str, params: dict) -> dict:
    """Calls the gateway through the page's own connection, as the logged-in principal."""
    return driver.execute_async_script(
        """
        const [method, params, done] = arguments;
        window.switchboardConsole.gw.call(method, params).then(
          (result) => done({result}),
          (error) => done({error: {code: error.code, message: error.message, data: error.data}}));
        """,
        method, params)


def go_to(driver, view: str) -> None:
    css(driver, f"[data-test=nav-{view}]").click()
    css(driver, f"[data-test=view-{view}]")


# --------------------------------------------------------------------------- logging in


def test_an_operator_logs_in_with_an_api_key_stays_logged_in_on_reload_and_logs_out(start_gateway, tmp_path, browser):
    config = write_config(tmp_path, auth={"anonymous": "none", "apiKeys": [api_key("ops-admin", ADMIN_KEY, ["admin"])]})
    gw = start_gateway("http", extra=["--config", config])
    browser.get(console_url(gw))
    css(browser, "[data-test=login-token]")
    screenshot(browser, "login")
    log_in(browser, gw, ADMIN_KEY)
    assert css(browser, ".principal-name").text == "ops-admin"
    assert [role.text for role in rows(browser, "principal-role")] == ["admin"]
    until(browser, lambda: css(browser, "[data-test=connection-state]").get_attribute("data-state") == "open")

    browser.refresh()
    css(browser, "[data-test=view-fleet]")
    assert css(browser, ".principal-name").text == "ops-admin"

    css(browser, "[data-test=logout]").click()
    css(browser, "[data-test=login-token]")
    browser.refresh()
    css(browser, "[data-test=login-token]")
    assert not rows(browser, "view-fleet")
    assert browser_errors(browser) == []


def test_a_wrong_key_is_refused_with_the_gateways_reason(start_gateway, tmp_path, browser):
    config = write_config(tmp_path, auth={"anonymous": "none", "apiKeys": [api_key("ops-admin", ADMIN_KEY, ["admin"])]})
    gw = start_gateway("http", extra=["--config", config])
    browser.get(console_url(gw))
    field = css(browser, "[data-test=login-token]")
    field.send_keys("not-a-key-of-this-gateway")
    css(browser, "[data-test=login-submit]").click()
    error = css(browser, "[data-test=login-error]")
    assert "unknown API key" in error.text
    assert not rows(browser, "view-fleet")
    # Nothing to authenticate with is refused too: this gateway serves no anonymous peer.
    field = css(browser, "[data-test=login-token]")
    field.clear()
    css(browser, "[data-test=login-submit]").click()
    until(browser, lambda: "credential" in css(browser, "[data-test=login-error]").text)
    screenshot(browser, "login-refused")


# --------------------------------------------------------------------------- fleet


def test_an_agent_that_joins_while_the_page_is_open_shows_and_is_drained_from_the_page(start_gateway, tmp_path, browser):
    gw = start_gateway("http", "tcp")
    log_in(browser, gw)
    browser.execute_script("window.__sameDocument = true")
    until(browser, lambda: css(browser, "[data-test=fleet-count]").text.startswith("0 instances"))
    assert rows(browser, "agent-row") == []

    agent = RpcSession.connect(gw.tcp)
    agent_id = agent.result("agents/register", {
        "agentName": "late-joiner", "version": "3", "tools": [{"name": "summarize", "inputSchema": {"type": "object"}}]})["agentId"]
    until(browser, lambda: agent_state(browser, agent_id) == "IDLE", message=f"{agent_id} never showed IDLE")

    css(browser, f'[data-test=agent-row][data-agent-id="{agent_id}"]').click()
    panel = css(browser, "[data-test=detail-panel]")
    assert agent_id in panel.text and "late-joiner" in panel.text
    screenshot(browser, "fleet-detail")
    confirm_click(browser, "[data-test=agent-drain]")

    # The gateway disconnects a drained attached agent: it is OFFLINE, here and on the wire.
    until(browser, lambda: agent_state(browser, agent_id) == "OFFLINE", message=f"{agent_id} never showed OFFLINE")
    assert browser.execute_script("return window.__sameDocument") is True, "the page was reloaded"
    with LineClient.connect(gw.tcp) as client:
        assert client.call("agents/get", {"agentId": agent_id})["result"]["currentState"] == "OFFLINE"
    agent.close()
    assert browser_errors(browser) == []


def test_maintenance_and_back_to_service_from_the_page(start_gateway, tmp_path, browser):
    config = write_config(tmp_path, agents={"search": spawned("search")})
    gw = start_gateway("http", "tcp", extra=["--config", config])
    log_in(browser, gw)
    until(browser, lambda: agent_state(browser, "search#1") == "IDLE")
    css(browser, '[data-test=agent-row][data-agent-id="search#1"]').click()
    css(browser, "[data-test=agent-maintenance]").click()
    until(browser, lambda: agent_state(browser, "search#1") == "MAINTENANCE")
    css(browser, "[data-test=agent-resume]").click()
    until(browser, lambda: agent_state(browser, "search#1") == "IDLE")

    # Per template: scaled from the detail panel, the new instance shows without a reload.
    count = css(browser, "[data-test=template-scale-count]")
    count.clear()
    count.send_keys("2")
    css(browser, "[data-test=template-scale]").click()
    until(browser, lambda: agent_state(browser, "search#2") in ("STARTING", "IDLE"), message="search#2 never showed")
    assert any("search: 1 → 2" in toast.text for toast in rows(browser, "toast"))
    assert browser_errors(browser) == []


def test_a_new_version_is_activated_then_rolled_back_from_the_page(start_gateway, tmp_path, browser):
    # With access control a new version waits for agents/activate (chapter 12, 12.5).
    config = write_config(tmp_path, auth={"anonymous": "none", "apiKeys": [api_key("ops-admin", ADMIN_KEY, ["admin"])]})
    gw = start_gateway("http", "tcp", extra=["--config", config])
    agents = {}
    for version in ("1", "2"):
        session = RpcSession.connect(gw.tcp)
        session.result("auth/authenticate", {"token": ADMIN_KEY})
        agents[version] = (session, session.result("agents/register", {
            "agentName": "pricing", "version": version, "tools": [{"name": "quote", "inputSchema": {"type": "object"}}]})["agentId"])
    old, new = agents["1"][1], agents["2"][1]

    log_in(browser, gw, ADMIN_KEY)
    pricing = '[data-test=template-row][data-template="pricing"]'
    until(browser, lambda: "awaiting activation" in css(browser, pricing).text)
    css(browser, pricing).click()
    css(browser, '[data-test=template-activate][data-version="2"]').click()
    until(browser, lambda: any("Version 2 of pricing is active" in toast.text for toast in rows(browser, "toast")))
    with LineClient.connect(gw.tcp) as client:
        client.call("auth/authenticate", {"token": ADMIN_KEY})
        assert client.call("agents/get", {"agentId": new})["result"]["activeVersion"] is True
    until(browser, lambda: "awaiting activation" not in css(browser, pricing).text)

    confirm_click(browser, "[data-test=template-rollback]")
    until(browser, lambda: any("rolled back from 2 to 1" in toast.text for toast in rows(browser, "toast")))
    # The version rolled back from is drained: its attached instance is disconnected.
    until(browser, lambda: agent_state(browser, new) == "OFFLINE", message=f"{new} was not drained")
    assert agent_state(browser, old) == "IDLE"
    for session, _ in agents.values():
        session.close()
    assert browser_errors(browser) == []


def test_a_viewer_is_offered_no_action_and_a_forced_one_is_refused(start_gateway, tmp_path, browser):
    config = write_config(tmp_path, auth={"anonymous": "none", "apiKeys": [
        api_key("ops-admin", ADMIN_KEY, ["admin"]), api_key("auditor", VIEWER_KEY, ["viewer"])]},
        audit={"file": str(tmp_path / "audit.jsonl")})
    gw = start_gateway("http", "tcp", extra=["--config", config])
    agent = RpcSession.connect(gw.tcp)
    assert agent.result("auth/authenticate", {"token": ADMIN_KEY})["principal"] == "ops-admin"
    agent_id = agent.result("agents/register", {"agentName": "pricing", "tools": [{"name": "quote", "inputSchema": {"type": "object"}}]})["agentId"]

    log_in(browser, gw, VIEWER_KEY)
    assert [role.text for role in rows(browser, "principal-role")] == ["viewer"]
    until(browser, lambda: agent_state(browser, agent_id) == "IDLE")
    css(browser, f'[data-test=agent-row][data-agent-id="{agent_id}"]').click()
    panel = css(browser, "[data-test=detail-panel]")
    assert agent_id in panel.text
    for action in ("agent-drain", "agent-maintenance", "agent-resume", "template-scale", "template-rollback", "template-activate"):
        assert rows(browser, action) == [], f"a viewer is offered {action}"

    forced = run_in_page(browser, "agents/drain", {"agentId": agent_id})
    assert forced["error"]["code"] == FORBIDDEN, forced
    assert forced["error"]["data"]["refused"].startswith("agents/drain")
    with LineClient.connect(gw.tcp) as client:
        client.call("auth/authenticate", {"token": ADMIN_KEY})
        assert client.call("agents/get", {"agentId": agent_id})["result"]["currentState"] == "IDLE"

    # The same page, logged in as an admin, drains it: each request in the audit log under the
    # principal that made it, as any client's.
    css(browser, "[data-test=logout]").click()
    log_in(browser, gw, ADMIN_KEY)
    until(browser, lambda: agent_state(browser, agent_id) == "IDLE")
    css(browser, f'[data-test=agent-row][data-agent-id="{agent_id}"]').click()
    confirm_click(browser, "[data-test=agent-drain]")
    until(browser, lambda: agent_state(browser, agent_id) == "OFFLINE")
    with LineClient.connect(gw.tcp) as client:
        client.call("auth/authenticate", {"token": ADMIN_KEY})
        entries = client.call("audit/query", {"method": "agents/drain"})["result"]["entries"]
    assert [(entry["principal"], entry["outcome"], entry["target"]) for entry in entries] == [
        ("ops-admin", "ok", agent_id), ("auditor", "refused", agent_id)]
    agent.close()


# --------------------------------------------------------------------------- tasks


def test_the_tasks_view_shows_the_queue_and_a_task_submitted_and_cancelled_from_it(start_gateway, tmp_path, browser):
    config = write_config(tmp_path, agents={"worker": spawned("work", maxConcurrency=1)})
    gw = start_gateway("http", "tcp", extra=["--config", config])
    gate = tmp_path / "gate"
    client = RpcSession.connect(gw.tcp)
    # One task holds the worker's only slot until the gate file exists.
    running = client.result("tasks/submit", {"tool": "work", "arguments": {"gate": str(gate), "text": "first"}})["taskId"]

    log_in(browser, gw)
    go_to(browser, "tasks")
    until(browser, lambda: task_state(browser, running) == "RUNNING", seconds=30, message="the first task never ran")
    css(browser, "[data-test=task-tool]").send_keys("work")
    arguments = css(browser, "[data-test=task-arguments]")
    arguments.clear()
    arguments.send_keys(json.dumps({"gate": str(gate), "text": "from the console"}))
    priority = css(browser, "[data-test=task-priority]")
    priority.clear()
    priority.send_keys("3")
    css(browser, "[data-test=task-submit]").click()

    toast = until(browser, lambda: next((t for t in rows(browser, "toast") if "submitted" in t.text), None))
    submitted = toast.text.split()[1]
    assert submitted != running
    until(browser, lambda: task_state(browser, submitted) == "PENDING")
    until(browser, lambda: css(browser, '[data-test=queue-by-priority] [data-priority="3"] .priority-count').text == "1",
          message="the queue never showed the task at priority 3")
    screenshot(browser, "tasks")

    # Its panel is open: cancel it there.
    confirm_click(browser, "[data-test=task-panel] [data-test=task-cancel]")
    until(browser, lambda: task_state(browser, submitted) == "CANCELLED")
    assert client.result("tasks/get", {"taskId": submitted})["state"] == "CANCELLED"

    # The running one shows its attempt on the worker; once the gate opens it completes.
    css(browser, "[data-test=detail-close]").click()
    css(browser, f'[data-test=task-row][data-task-id="{running}"]').click()
    attempts = css(browser, "[data-test=task-attempts]")
    assert "worker#1" in attempts.text
    gate.write_text("open")
    until(browser, lambda: task_state(browser, running) == "COMPLETED")
    client.close()
    assert browser_errors(browser) == []


# --------------------------------------------------------------------------- events


def test_the_events_tail_shows_what_is_published_to_its_pattern_and_pauses(start_gateway, browser):
    gw = start_gateway("http", "tcp")
    log_in(browser, gw)
    go_to(browser, "events")
    pattern = css(browser, "[data-test=event-filter]")
    pattern.send_keys(Keys.CONTROL, "a")
    pattern.send_keys("market.*", Keys.ENTER)

    publisher = LineClient.connect(gw.tcp)

    def published_row():
        # The subscription is made as the pattern changes: publish until the page has one.
        publisher.call("events/publish", {"topic": "weather.oslo", "data": {"celsius": -3}})
        publisher.call("events/publish", {"topic": "market.btc", "data": {"price": 97012.5}})
        return next((row for row in rows(browser, "event-row") if row.get_attribute("data-topic") == "market.btc"), None)

    row = until(browser, published_row, message="no market.btc event showed")
    assert "97012.5" in row.text
    # Events of one connection arrive in order: weather.oslo, published first, would be here.
    assert all(row.get_attribute("data-topic") == "market.btc" for row in rows(browser, "event-row"))
    screenshot(browser, "events")
    # Every market.btc published above is shown before the pause: a last event, published after
    # them on the same connection (so delivered after them), shows on top.
    publisher.call("events/publish", {"topic": "market.sync", "data": {}})
    until(browser, lambda: rows(browser, "event-row")[0].get_attribute("data-topic") == "market.sync")

    css(browser, "[data-test=event-pause]").click()
    shown = len(rows(browser, "event-row"))
    publisher.call("events/publish", {"topic": "market.eth", "data": {"price": 3500}})
    until(browser, lambda: "1 waiting" in css(browser, "[data-test=event-status]").text)
    assert not [row for row in rows(browser, "event-row") if row.get_attribute("data-topic") == "market.eth"]
    assert len(rows(browser, "event-row")) == shown
    css(browser, "[data-test=event-pause]").click()
    until(browser, lambda: rows(browser, "event-row")[0].get_attribute("data-topic") == "market.eth")
    assert rows(browser, "event-row")[1].get_attribute("data-topic") == "market.sync"
    assert len(rows(browser, "event-row")) == shown + 1
    publisher.close()
    assert browser_errors(browser) == []


# --------------------------------------------------------------------------- charts


def test_the_charts_draw_the_calls_made_through_the_gateway(start_gateway, tmp_path, browser):
    config = write_config(tmp_path, agents={"echo": spawned("echo")})
    gw = start_gateway("http", "tcp", extra=["--config", config])
    with LineClient.connect(gw.tcp) as client:
        for n in range(12):
            assert "result" in client.call("tools/call", {"name": "echo", "arguments": {"text": str(n)}}, timeout=60)

    log_in(browser, gw)
    go_to(browser, "charts")

    def drawn_path(chart: str):
        paths = browser.find_elements(By.CSS_SELECTOR, f"[data-test={chart}] path.series")
        return next((path for path in paths if "L" in (path.get_attribute("d") or "")), None)

    assert until(browser, lambda: drawn_path("chart-throughput"), message="no throughput line")
    assert "12 calls" in css(browser, "[data-test=chart-totals]").text
    # Latency has one bucket with calls: a dot, or a line once calls span two minutes.
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "[data-test=chart-latency] .series-p50"))
    screenshot(browser, "charts")

    ActionChains(browser).move_to_element(css(browser, "[data-test=chart-throughput] rect.overlay")).perform()
    assert "calls/min" in css(browser, "[data-test=chart-throughput] [data-test=chart-readout]").text

    # One template, one tool: the same calls.
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, '[data-test=chart-subject] option[value="template:echo"]'))
    css(browser, '[data-test=chart-subject] option[value="template:echo"]').click()
    until(browser, lambda: "12 calls" in css(browser, "[data-test=chart-totals]").text and drawn_path("chart-throughput"))
    until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, '[data-test=chart-tool] option[value="echo"]'))
    css(browser, '[data-test=chart-tool] option[value="echo"]').click()
    until(browser, lambda: "12 calls" in css(browser, "[data-test=chart-totals]").text and drawn_path("chart-throughput"))
    assert not browser.find_element(By.CSS_SELECTOR, "[data-test=chart-error]").is_displayed()
    assert browser_errors(browser) == []


# --------------------------------------------------------------------------- every view, and a large fleet


def test_every_view_opens_from_the_navigation_and_the_address_names_it(start_gateway, browser):
    gw = start_gateway("http")
    log_in(browser, gw)
    for view in ("tasks", "workflows", "builder", "charts", "events", "fleet"):
        go_to(browser, view)
        assert browser.current_url.split("#", 1)[1].startswith(f"/{view}")
        assert "active" in css(browser, f"[data-test=nav-{view}]").get_attribute("class")
    browser.get(console_url(gw) + "#/events")
    css(browser, "[data-test=view-events]")
    browser.get(console_url(gw) + "#/no-such-view")
    css(browser, "[data-test=view-fleet]")
    assert browser_errors(browser) == []


AGENTS_IN_FLEET = 1000


def test_a_fleet_of_a_thousand_agents_paints_quickly_and_keeps_few_rows_in_the_page(start_gateway, tmp_path, browser):
    raise_nofile(4 * AGENTS_IN_FLEET)
    config = write_config(tmp_path, limits={"maxConnectionsPerPeer": 2 * AGENTS_IN_FLEET})
    gw = start_gateway("http", "tcp", extra=["--config", config])
    # One connection is one agent (chapter 07): a thousand connections, registered at once.
    sockets = {n: gw.tcp.connect() for n in range(AGENTS_IN_FLEET)}
    try:
        for n, sock in sockets.items():
            sock.sendall(jline(req("agents/register", 1, {
                "agentName": f"bulk-{n % 10}", "tools": [{"name": f"tool-{n % 10}", "inputSchema": {"type": "object"}}]})))
        replies = exchange_all(sockets, timeout=60)
        assert all("result" in reply for reply in replies.values())

        log_in(browser, gw)
        until(browser, lambda: browser.execute_script("return window.switchboardConsole.marks.fleetFirstRows"))
        until(browser, lambda: css(browser, "[data-test=fleet-count]").text.startswith("1,000 instances"))
        login_to_rows = browser.execute_script("const m = window.switchboardConsole.marks; return m.fleetFirstRows - m.loginSubmitted")

        # A reload, logged in: from the navigation's start to the fleet's rows on screen.
        browser.refresh()
        until(browser, lambda: browser.execute_script("return window.switchboardConsole.marks.fleetFirstRows"))
        reload_to_rows = browser.execute_script("return window.switchboardConsole.marks.fleetFirstRows")
        paint = browser.execute_script(
            "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null")
        steps = browser.execute_script("return window.switchboardConsole.marks")

        # From another view back to the fleet.
        go_to(browser, "tasks")
        navigate_to_rows = browser.execute_async_script("""
            const done = arguments[0];
            const marks = window.switchboardConsole.marks;
            delete marks.fleetFirstRows;
            const start = performance.now();
            document.querySelector('[data-test=nav-fleet]').click();
            const poll = () => ('fleetFirstRows' in marks) ? done(marks.fleetFirstRows - start) : setTimeout(poll, 5);
            poll();
        """)
        print(f"\nfleet of {AGENTS_IN_FLEET} agents: first contentful paint {paint:.0f} ms; rows painted {reload_to_rows:.0f} ms "
              f"after a reload's navigation start, {login_to_rows:.0f} ms after pressing Log in, {navigate_to_rows:.0f} ms after "
              f"clicking Fleet; after the reload: connected {steps['connected']:.0f} ms, logged in {steps['loggedIn']:.0f} ms, "
              f"agents listed {steps['fleetListed']:.0f} ms")

        until(browser, lambda: css(browser, "[data-test=fleet-count]").text.startswith("1,000 instances"))
        in_page = len(rows(browser, "agent-row"))
        assert 0 < in_page < 100, f"{in_page} rows in the page for {AGENTS_IN_FLEET} agents"
        screenshot(browser, "fleet")

        # Scrolled to the end, the last agents are there, and still only a screenful of rows.
        browser.execute_script("document.querySelector('.view-fleet .vtable-viewport').scrollTop = 1e9")
        last = max(replies.values(), key=lambda reply: reply["result"]["agentId"])["result"]["agentId"]
        until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, f'[data-test=agent-row][data-agent-id="{last}"]'))
        assert len(rows(browser, "agent-row")) < 100

        # The filter narrows the table and the templates.
        css(browser, "[data-test=fleet-filter]").send_keys("bulk-3")
        until(browser, lambda: "100 shown" in css(browser, "[data-test=fleet-count]").text)
        assert {row.get_attribute("data-template") for row in rows(browser, "template-row")} == {"bulk-3"}
        assert browser_errors(browser) == []
    finally:
        for sock in sockets.values():
            sock.close()

