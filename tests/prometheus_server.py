"""A real Prometheus server for the tests, scraping targets found through HTTP service discovery.

    async with prometheus_server(sd_url, tmp_path, token="secret") as prom:
        await prom.wait_for_target()
        assert await prom.wait_for_value("sum(clientswarm_requests_total)", 42) == 42

The server listens on a free 127.0.0.1 port, keeps its storage under ``tmp_path``, refreshes
discovery and scrapes every second, and sends ``Authorization: Bearer <token>`` (when given) to
both the SD endpoint and the scrape targets. Tests that need it skip, saying why, when
``prometheus`` (Debian package ``prometheus``, see ``scripts/ensure-test-deps.sh``) is missing.
Failures carry the tail of the server's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

JOB = "clientswarm"
INSTALL_HINT = (
    "install the Debian package 'prometheus' (as root: scripts/ensure-test-deps.sh, or "
    "apt-get install --no-install-recommends prometheus)"
)


def require(program: str) -> str:
    """The path of ``program`` (``prometheus``, ``promtool``); skips the test when missing."""
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed: {INSTALL_HINT}")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prometheus_config(
    sd_url: str, *, token: str | None = None, interval_s: float = 1.0, job: str = JOB
) -> dict[str, Any]:
    """A config with one scrape job whose targets come from the HTTP SD endpoint ``sd_url``."""
    interval = f"{int(interval_s * 1000)}ms"
    sd: dict[str, Any] = {"url": sd_url, "refresh_interval": interval}
    scrape: dict[str, Any] = {
        "job_name": job,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "http_sd_configs": [sd],
    }
    if token is not None:
        sd["authorization"] = {"type": "Bearer", "credentials": token}
        scrape["authorization"] = {"type": "Bearer", "credentials": token}
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [scrape],
    }


class PrometheusError(AssertionError):
    """Prometheus did not do what the test waited for; the message carries its log tail."""


@dataclass
class PrometheusServer:
    """A running Prometheus and an HTTP client to its API."""

    url: str
    process: asyncio.subprocess.Process
    log_path: Path
    session: aiohttp.ClientSession

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, message: str) -> PrometheusError:
        """An error saying what failed, with the server's log tail."""
        return PrometheusError(f"{message}\n--- prometheus log tail ---\n{self.log_tail()}")

    async def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; returns the answer's ``data``."""
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json(content_type=None)
        if body.get("status") != "success":
            raise self.fail(f"/api/v1/{path} {params} failed: {body}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """A PromQL instant vector, e.g. ``[{"metric": {}, "value": [t, "3"]}]``."""
        data = await self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def query_value(self, expr: str) -> float | None:
        """The value of a one-element PromQL result; None when it has no series."""
        result = await self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise self.fail(f"{expr!r} has {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])

    async def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets."""
        data = await self.api("targets", state="active")
        targets: list[dict[str, Any]] = data["activeTargets"]
        return targets

    async def wait_for_target(
        self, *, job: str = JOB, health: str = "up", timeout_s: float = 20.0
    ) -> dict[str, Any]:
        """The first target of ``job`` once it was discovered and scraped with ``health``."""
        seen: list[dict[str, Any]] = []

        async def check() -> dict[str, Any] | None:
            seen[:] = [t for t in await self.targets() if t["labels"].get("job") == job]
            return next((t for t in seen if t["health"] == health), None)

        target: dict[str, Any] = await self._poll(
            check, timeout_s, lambda: f"no {health} target of job {job!r}; targets: {seen}"
        )
        return target

    async def wait_for_value(self, expr: str, expected: float, *, timeout_s: float = 15.0) -> float:
        """Poll ``expr`` until it equals ``expected``; returns it."""
        last: list[float | None] = [None]

        async def check() -> float | None:
            last[0] = value = await self.query_value(expr)
            return value if value == expected else None

        value: float = await self._poll(
            check, timeout_s, lambda: f"{expr!r} is {last[0]}, expected {expected}"
        )
        return value

    async def _poll(
        self, check: Callable[[], Awaitable[Any]], timeout_s: float, explain: Callable[[], str]
    ) -> Any:
        """Await ``check()`` until it returns something other than None."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.returncode is not None:
                raise self.fail(f"prometheus exited with status {self.process.returncode}")
            found = await check()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise self.fail(f"after {timeout_s:.0f} s: {explain()}")
            await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def prometheus_server(
    sd_url: str,
    tmp_path: Path,
    *,
    token: str | None = None,
    interval_s: float = 1.0,
    job: str = JOB,
    startup_timeout_s: float = 20.0,
) -> AsyncIterator[PrometheusServer]:
    """Run a real Prometheus discovering its targets at ``sd_url`` (skips when not installed)."""
    binary = require("prometheus")
    config_path = tmp_path / "prometheus.yml"
    config = prometheus_config(sd_url, token=token, interval_s=interval_s, job=job)
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        server = None
        for attempt in range(3):  # the free port may be taken before Prometheus binds it
            server = await _start(binary, config_path, tmp_path, session, attempt)
            if await _ready(server, startup_timeout_s):
                break
            await _stop(server.process)
            if "address already in use" not in server.log_tail().lower():
                raise server.fail(f"prometheus did not become ready in {startup_timeout_s} s")
        else:
            assert server is not None
            raise server.fail("prometheus found no free port in 3 attempts")
        try:
            yield server
        finally:
            await _stop(server.process)


async def _start(
    binary: str, config: Path, tmp_path: Path, session: aiohttp.ClientSession, attempt: int
) -> PrometheusServer:
    port = free_port()
    log_path = tmp_path / f"prometheus-{attempt}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / f'data-{attempt}'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=info",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    return PrometheusServer(f"http://127.0.0.1:{port}", process, log_path, session)


async def _ready(server: PrometheusServer, timeout_s: float) -> bool:
    """Wait for ``/-/ready``; False when the process exited or the time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.process.returncode is None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with server.session.get(f"{server.url}/-/ready") as resp:
                if resp.status == 200:
                    return True
        await asyncio.sleep(0.1)
    return False


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()
