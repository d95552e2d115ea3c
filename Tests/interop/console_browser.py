"""A real browser for the console's tests: Debian's headless Chromium driven through Selenium.

`browser` is a WebDriver on a fresh profile; `console_url(gw)` is the console of a gateway started
with an `http://` listener; `log_in(driver, gw, token)` opens it and logs in the way a person
does (typing the credential and pressing the button), then waits for the fleet view.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 15
# Screenshots go to a scratch folder; `SWITCHBOARD_SCREENSHOTS=docs/console` refreshes the
# README's pictures (a test run leaves the work tree as it was).
SCREENSHOTS = Path(os.environ.get("SWITCHBOARD_SCREENSHOTS") or Path(tempfile.gettempdir()) / "switchboard-console-screenshots")


def chromium_paths() -> tuple[str, str]:
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return binary, driver


def make_driver(width: int = 1400, height: int = 900) -> webdriver.Chrome:
    binary, driver_path = chromium_paths()
    if not Path(binary).exists() or not Path(driver_path).exists():
        pytest.fail("Chromium and its driver are needed: apt-get install chromium chromium-driver (scripts/setup.sh --test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="sb-chromium-")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", f"--user-data-dir={profile}", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver._sb_profile = profile
    return driver


def quit_driver(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "_sb_profile", ""), ignore_errors=True)


@pytest.fixture
def browser():
    driver = make_driver()
    yield driver
    quit_driver(driver)


def http_base(gw) -> str:
    return gw.endpoint("http").url.rstrip("/")


def console_url(gw) -> str:
    return http_base(gw) + "/console/"


def wait(driver, seconds: float = WAIT_SECONDS) -> WebDriverWait:
    return WebDriverWait(driver, seconds)


def css(driver, selector: str, seconds: float = WAIT_SECONDS):
    """The first element `selector` finds, once it is visible."""
    return wait(driver, seconds).until(EC.visibility_of_element_located((By.CSS_SELECTOR, selector)))


def log_in(driver, gw, token: str | None = None) -> None:
    driver.get(console_url(gw))
    if token is not None:
        field = css(driver, "[data-test=login-token]")
        field.clear()
        field.send_keys(token)
    css(driver, "[data-test=login-submit]").click()
    css(driver, "[data-test=view-fleet]")


def screenshot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def browser_errors(driver) -> list[str]:
    """What the page wrote to the console at level SEVERE (uncaught errors, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
