"""Generate the screenshot of a sweep report shown in the docs (docs/images/report-sweep.png).

    .venv/bin/python scripts/report_screenshot.py [--fixture DIR] [--output PNG]

Builds report.html from the committed fixture run (tests/fixtures/report-sweep: summary.json,
timeseries.json, config.json of a five-stage open-loop sweep against the simulator with a
concurrency cap) and photographs it in real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, see scripts/ensure-test-deps.sh), with the network off. The browser test
(tests/integration/test_report_browser.py) checks the page's DOM; this script only makes the
picture.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from selenium import webdriver

from clientswarm.reports.html import render_report

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "report-sweep"
OUTPUT = ROOT / "docs" / "images" / "report-sweep.png"
WIDTH_PX = 1240
MAX_HEIGHT_PX = 3400

OFFLINE_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--proxy-server=127.0.0.1:9",  # a proxy to nowhere: no request leaves the machine
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def offline_chrome(width_px: int = WIDTH_PX, height_px: int = 1000) -> webdriver.Chrome:
    """Headless Chromium with the network off and the browser console captured."""
    options = webdriver.ChromeOptions()
    for arg in (*OFFLINE_ARGS, f"--window-size={width_px},{height_px}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    docs = {
        name: json.loads((args.fixture / f"{name}.json").read_text())
        for name in ("summary", "timeseries", "config")
    }
    page = render_report(docs["summary"], docs["timeseries"], docs["config"])
    with tempfile.TemporaryDirectory(prefix="clientswarm-shot-") as folder:
        path = Path(folder) / "report.html"
        path.write_text(page, encoding="utf-8")
        driver = offline_chrome()
        try:
            driver.get(path.as_uri())
            height = int(driver.execute_script("return document.body.scrollHeight"))
            driver.set_window_size(WIDTH_PX, min(height + 40, MAX_HEIGHT_PX))
            errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            if errors:
                print(f"console errors: {errors}", file=sys.stderr)
                return 1
            args.output.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.output))
        finally:
            driver.quit()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
