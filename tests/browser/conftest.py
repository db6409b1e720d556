"""Browser-test fixtures: a real FlipMatch server on 127.0.0.1 (tiny artifact, admin and query keys) and headless
Debian Chromium driven by selenium through the system chromedriver. Without Chromium the tests skip with the
reason; CI installs it (.ci/run)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.live_server import LiveServer

CHROMIUM = os.environ.get("FLIPMATCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FLIPMATCH_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1400,1100"]


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            return f"{path} not found: apt-get install chromium chromium-driver (.ci/run does)"
    return None


@pytest.fixture
def live_server(tiny_artifact: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """The service with an admin key and a query key (hardening's ADMIN / QUERY), info-level logs in a file."""
    from tests.hardening.live_server import QUERY

    server = LiveServer(tiny_artifact, tmp_path / "data", tmp_path / "server.log", FLIPMATCH_AUTH__QUERY_KEY=QUERY,
                        FLIPMATCH_LOG_LEVEL="info")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    reason = _missing()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}")
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "driver.log")),
                              options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
