"""The API documentation pages of a real ``clientswarm serve`` work with no network: Swagger UI
(``/docs``) and ReDoc (``/redoc``) load their assets from the service, and real headless
Chromium, with every address but the loopback unreachable, draws both with no console error."""

from __future__ import annotations

import hashlib
import re
import time
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from test_report_browser import browser  # noqa: F401  (the shared offline Chromium fixture)

from clientswarm.service.apidocs import ASSETS, ASSETS_PATH
from service_process import ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ASSET_DIR = resources.files("clientswarm.service").joinpath("assets", "apidocs")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with ServiceProcess(tmp_path_factory.mktemp("apidocs"), token="docs-token") as running:
        yield running


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["content-type"], response.read()


def test_the_vendored_assets_are_the_recorded_ones() -> None:
    recorded = (ASSET_DIR / "VENDORED.md").read_text()
    hashes = dict(re.findall(r"^\| (\S+) \| [^|]+ \| ([0-9a-f]{64}) \|$", recorded, re.M))
    assert set(hashes) == set(ASSETS)
    for name, sha256 in hashes.items():
        assert hashlib.sha256((ASSET_DIR / name).read_bytes()).hexdigest() == sha256, name


def test_the_pages_name_no_address_off_the_service(service: ServiceProcess) -> None:
    for page in ("/docs", "/redoc"):
        status, kind, body = _get(service.url + page)
        assert status == 200 and kind.startswith("text/html")
        html = body.decode()
        assert ASSETS_PATH in html
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
        assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html
    for name, media_type in ASSETS.items():
        status, kind, body = _get(f"{service.url}{ASSETS_PATH}/{name}")
        assert status == 200 and kind == media_type and body == (ASSET_DIR / name).read_bytes()
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(f"{service.url}{ASSETS_PATH}/..%2Fapp.py")
    assert missing.value.code == 404


def _wait_for(driver: Any, script: str, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"the page never satisfied: {script}")


def test_swagger_ui_and_redoc_render_offline(
    service: ServiceProcess,
    browser: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    browser.get(service.url + "/docs")
    title = _wait_for(
        browser,
        "const t = document.querySelector('.swagger-ui .info .title'); return t && t.textContent",
    )
    assert title.startswith("clientswarm")
    operations = _wait_for(
        browser, "return document.querySelectorAll('.swagger-ui .opblock').length"
    )
    assert operations >= 10  # the frontend's and monitor's routes
    assert browser.get_log("browser") == []
    browser.get(service.url + "/redoc")
    heading = _wait_for(
        browser, "const h = document.querySelector('.api-info h1'); return h && h.textContent"
    )
    assert heading.startswith("clientswarm")
    assert _wait_for(browser, "return document.querySelectorAll('[data-section-id]').length") > 5
    assert browser.get_log("browser") == []
    browser.save_screenshot(str(tmp_path / "redoc.png"))
