"""Screenshots of the operator console for docs/console.md: the real service with the demo corpora on loopback,
driven by headless Chromium (the same flags and driver as tests/browser).

    .venv/bin/python -m bench.console_screenshots --model artifacts/flipmatch-default --out docs/figures
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from tests.browser.conftest import CHROMEDRIVER, CHROMIUM, FLAGS
from tests.hardening.live_server import ADMIN, LiveServer

logger = logging.getLogger("bench.console_screenshots")


def shoot(url: str, out: Path, profile: Path, query: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    wait = WebDriverWait(driver, 120, poll_frequency=0.1)
    try:
        driver.get(f"{url}/console")
        driver.find_element("id", "key").send_keys(ADMIN)
        driver.find_element("id", "use-key").click()
        wait.until(lambda d: d.find_elements("css selector", "#corpora tr[data-name='banking77']"))
        driver.find_element("css selector", "#corpora tr[data-name='banking77']").click()
        wait.until(lambda d: "calibration (" in d.find_element("id", "calibration-summary").text)
        driver.find_element("id", "try-query").send_keys(query)
        driver.find_element("id", "try-button").click()
        wait.until(lambda d: d.find_element("id", "try-outcome").get_attribute("data-outcome"))
        out.mkdir(parents=True, exist_ok=True)
        driver.execute_script("document.getElementById('corpus-panel').scrollIntoView()")
        driver.save_screenshot(str(out / "console-banking77.png"))
        logger.info("wrote %s", out / "console-banking77.png")
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="artifacts/flipmatch-default")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--service-dir", type=Path, default=None, help="reuse a service data folder (fast restart)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--query", default="my card still has not come")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        service_dir = args.service_dir or Path(tmp) / "service"
        server = LiveServer(Path(args.model).resolve(), service_dir, Path(tmp) / "server.log",
                            FLIPMATCH_DEMO__PRELOAD="true", FLIPMATCH_DEMO__DATA_DIR=str(args.data_dir.resolve()),
                            FLIPMATCH_CPU_THREADS="0")
        try:
            url = server.start(timeout=3600)
            shoot(url, args.out, Path(tmp) / "profile", args.query)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
