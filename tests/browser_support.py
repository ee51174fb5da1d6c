"""A real Chromium (Debian's ``chromium`` + ``chromium-driver``) driving the
Control UI of a real ``twistd openclaw`` process.

:class:`UiGateway` starts the scripted upstream (:mod:`tests.browser_upstream`)
and the gateway on a fixed loopback port, so a restarted gateway comes back
at the same address. :func:`start_chrome` opens one headless browser with a
fresh profile. Waits are ``WebDriverWait`` on DOM conditions, never sleeps.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.gateway_process import TOKEN, GatewayProcess, write_config

ROOT = Path(__file__).resolve().parent.parent
#: Screenshots of a run (gitignored).
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WAIT_SECONDS = 30.0
#: How often a wait looks again. WebDriverWait's default (0.5 s) made every
#: wait that is not already true cost up to half a second, about 150 waits a
#: run; one look is a single script round trip of a few milliseconds.
POLL_SECONDS = 0.05
T = TypeVar("T")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ScriptedUpstream:
    """``python -m tests.browser_upstream`` in a subprocess."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.browser_upstream"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        line = b""
        while time.monotonic() < deadline and selector.select(deadline - time.monotonic()):
            line = self.process.stdout.readline()
            match = re.search(rb"upstream listening on (\d+)", line)
            if match:
                self.port = int(match.group(1))
                selector.close()
                return
            if not line:
                break
        selector.close()
        self.stop()
        raise RuntimeError(f"scripted upstream did not start: {line!r}")

    def stop(self) -> None:
        """Kill and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class UiGateway:
    """The gateway (token auth, agent ``main`` on the scripted upstream) and its upstream."""

    def __init__(self, *, auth: dict[str, Any] | None = None, **control_ui: Any) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="openclaw-ui-"))
        self.upstream = ScriptedUpstream()
        self.port = free_port()
        provider = {
            "api": "openai-completions",
            "baseUrl": f"http://127.0.0.1:{self.upstream.port}/v1",
            "apiKey": "upstream-key",
            "models": [{"id": "gpt-fake"}],
        }
        extra: dict[str, Any] = {
            "models": {"providers": {"fake": provider}},
            "agents": {
                "list": [
                    {"id": "main", "default": True, "name": "Main", "model": "fake/gpt-fake"},
                    {"id": "helper", "name": "Helper", "model": "fake/gpt-fake"},
                ]
            },
        }
        gateway: dict[str, Any] = {}
        if control_ui:
            gateway["controlUi"] = control_ui
        if auth is not None:
            gateway["auth"] = auth
        self.config = write_config(self.directory, extra, **gateway)
        self.base_path = str(control_ui.get("basePath", ""))
        self.process: GatewayProcess | None = None
        self.start()

    def start(self) -> None:
        """Start (or restart) the gateway on the same port and state directory."""
        self.process = GatewayProcess(
            self.config,
            self.directory / "state",
            extra_args=("--listen", f"tcp:{self.port}:interface=127.0.0.1"),
        )

    def set_token(self, token: str) -> None:
        """Change the token in the config (takes effect at the next start)."""
        config = json.loads(self.config.read_text())
        config["gateway"]["auth"] = {"mode": "token", "token": token}
        self.config.write_text(json.dumps(config))

    def stop(self) -> None:
        """Stop the gateway (SIGTERM: a graceful shutdown)."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    @property
    def url(self) -> str:
        base = self.base_path.rstrip("/")
        return f"http://127.0.0.1:{self.port}{base}/"

    def close(self) -> None:
        """Stop everything and remove the state directory."""
        try:
            if self.process is not None:
                self.process.ensure_stopped()
        finally:
            self.upstream.stop()
            shutil.rmtree(self.directory, ignore_errors=True)


def start_chrome() -> tuple[webdriver.Chrome, Path]:
    """A headless Chromium with a fresh profile (returned for cleanup)."""
    profile = Path(tempfile.mkdtemp(prefix="openclaw-chrome-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,860")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver, profile


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T | None], what: str) -> T:
    """Wait until ``condition`` is truthy (a DOM condition), failing with ``what``."""
    result = WebDriverWait(driver, WAIT_SECONDS, poll_frequency=POLL_SECONDS).until(
        condition, message=what
    )
    assert result is not None  # until() returns only a truthy value
    return result


def by_id(driver: WebDriver, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def visible(driver: WebDriver, element_id: str) -> bool:
    """The element exists and is displayed."""
    elements = driver.find_elements(By.ID, element_id)
    return bool(elements) and elements[0].is_displayed()


def conn_state(driver: WebDriver) -> str:
    return str(by_id(driver, "conn-state").get_attribute("data-state"))


def sign_in(
    driver: WebDriver, secret: str = TOKEN, *, remember: bool = False, kind: str = "token"
) -> None:
    """Fill in the sign-in form and submit it."""
    driver.find_element(By.CSS_SELECTOR, f"input[name=kind][value={kind}]").click()
    field = by_id(driver, "secret")
    field.clear()
    field.send_keys(secret)
    box = by_id(driver, "remember")
    if box.is_selected() != remember:
        box.click()
    by_id(driver, "login-submit").click()


def message_texts(driver: WebDriver, css: str = ".msg") -> list[str]:
    """The text of the conversation's items matching ``css``."""
    # One script, so a list re-rendered meanwhile cannot leave a stale element.
    texts: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText);",
        f"#messages {css}",
    )
    return texts


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """Save a PNG under build/screenshots/ (gitignored) and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


__all__ = [
    "TOKEN",
    "UiGateway",
    "by_id",
    "conn_state",
    "message_texts",
    "save_screenshot",
    "sign_in",
    "start_chrome",
    "visible",
    "wait_for",
]
