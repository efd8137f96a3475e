"""Generate the screenshots of the web UI shown in the docs (docs/images/ui-*.png).

    .venv/bin/python scripts/ui_screenshots.py [--output-dir docs/images]

Starts the simulator and a real ``clientswarm serve`` (with a token) on free loopback ports,
runs the fixture configuration below through the UI in real headless Chromium (Debian's
``chromium`` and ``chromium-driver``; every address but the loopback unreachable) and
photographs the main pages: the submit page with a problem shown at its line, a cluster live,
its results, and the cluster list. The browser test (tests/integration/test_web_ui.py) checks
the pages' DOM; this script only makes the pictures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from service_process import ServiceProcess, simulator  # noqa: E402

TOKEN = "screenshot-token"
CONFIG = """\
name: ui-demo
seed: 7
target: {{url: '{url}', model: mock-model}}
slo: {{ttft_s: 0.2}}
groups:
  - name: chat
    clients: 8
    interaction: {{kind: chat, prompts: ['Tell me a story.'], max_tokens: 32}}
    load: {{kind: closed, think_time_s: 0.2}}
    stop: {{duration_s: 12}}
  - name: bulk
    clients: 4
    interaction: {{kind: completion, prompts: ['Hello'], max_tokens: 16}}
    load: {{kind: open, rate: 15}}
    stop: {{duration_s: 12}}
"""


def chrome(width_px: int, height_px: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--window-size={width_px},{height_px}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(
        service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"), options=options
    )


def set_editor(driver: webdriver.Chrome, text: str) -> None:
    editor = driver.find_element(By.ID, "config")
    driver.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        editor,
        text,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as scratch,
        simulator("--ttft-ms", "40", "--itl-ms", "8") as url,
        ServiceProcess(Path(scratch) / "svc", token=TOKEN) as service,
    ):
        driver = chrome(1280, 900)
        try:
            driver.get(service.url + "/")
            driver.execute_script(f"sessionStorage.setItem('clientswarm-token', '{TOKEN}')")
            driver.get(service.url + "/#/submit")
            driver.refresh()
            time.sleep(0.5)
            config = CONFIG.format(url=url)
            set_editor(driver, config.replace("kind: open, rate: 15", "kind: open, rat: 15"))
            time.sleep(1.0)
            driver.save_screenshot(str(out / "ui-submit.png"))
            set_editor(driver, config)
            time.sleep(1.0)
            driver.find_element(By.ID, "run").click()
            time.sleep(6.0)
            driver.save_screenshot(str(out / "ui-cluster-live.png"))
            time.sleep(9.0)
            driver.set_window_size(1280, 1500)
            driver.save_screenshot(str(out / "ui-cluster-results.png"))
            driver.set_window_size(1280, 600)
            driver.get(service.url + "/#/")
            time.sleep(1.5)
            driver.save_screenshot(str(out / "ui-clusters.png"))
        finally:
            driver.quit()
    for name in ("ui-submit", "ui-cluster-live", "ui-cluster-results", "ui-clusters"):
        print(f"wrote {out / name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
