"""The API contract, checked from outside: schemathesis (every check) against a real service.

The service runs as ``clientswarm serve`` with a token and the operator flags of a shared
service, in front of the real simulator; schemathesis runs as its own process from the
service's ``/openapi.json`` and must find nothing: every status declared, every error body as
declared, no 500, no schema-valid input refused but for the documented 422s (see
``api_contract_hooks.py``). Its stateful phase creates a cluster from the document's example
configuration (aimed at the simulator here), follows the links to it and stops it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_process import FINAL, ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
HOOKS = Path(__file__).with_name("api_contract_hooks.py")
TOKEN = "contract-token"
RUN_S = 50  # schemathesis' own budget for all its phases (each runs; fuzzing and the stateful
# phase repeat until it is spent)
WORKER_MEMORY_BYTES = 4 << 30  # a safety net: no process of the service grows past this


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    """The service, limited like a shared one, with the simulator as its one allowed target."""
    flags = ("--allow-target", "127.0.0.1", "--max-workers", "1", "--max-clients", "4")
    flags += ("--max-active-clusters", "2")
    with simulator("--ttft-ms", "5", "--itl-ms", "1") as target_url:
        svc = ServiceProcess(tmp_path / "svc", token=TOKEN, extra=flags).start()
        try:
            assert svc.process is not None
            # Workers inherit the limit: a load that asked too much fails, the machine is spared.
            limit = (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES)
            resource.prlimit(svc.process.pid, resource.RLIMIT_AS, limit)
            yield svc, target_url
            _stop_every_cluster(svc)
        finally:
            svc.stop()


def _stop_every_cluster(svc: ServiceProcess, timeout_s: float = 60) -> None:
    """Stop what schemathesis started (repeat series first: they would make further runs),
    and wait until every cluster has ended."""
    status, series = svc.api("GET", "/repeats")
    assert status == 200, series
    for one in series:
        if one["status"] not in FINAL:
            svc.api("POST", f"/repeats/{one['id']}/stop")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, clusters = svc.api("GET", "/clusters")
        assert status == 200, clusters
        running = [c["id"] for c in clusters if c["status"] not in FINAL]
        if not running:
            return
        for cluster_id in running:
            svc.api("POST", f"/clusters/{cluster_id}/stop")
        time.sleep(1)
    raise AssertionError(f"clusters still running after {timeout_s} s: {running}")


def _document(svc: ServiceProcess, target_url: str) -> dict[str, Any]:
    """The service's OpenAPI document, its example configuration aimed at the simulator."""
    with urllib.request.urlopen(svc.url + "/openapi.json", timeout=30) as response:
        document: dict[str, Any] = json.load(response)
    for path in ("/api/v1/clusters", "/api/v1/repeats"):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        content["application/json"]["example"]["target"]["url"] = target_url
    return document


def test_schemathesis_finds_nothing(service: tuple[ServiceProcess, str], tmp_path: Path) -> None:
    svc, target_url = service
    schema_file = tmp_path / "openapi.json"
    schema_file.write_text(json.dumps(_document(svc, target_url)))
    command = [
        SCHEMATHESIS,
        "run",
        str(schema_file),
        "--url",
        svc.url,
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--exclude-path-regex",
        "/progress$",  # Server-Sent Events: a stream that ends only with its cluster
        "--max-time",
        str(RUN_S),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "filter_too_much,too_slow",
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_S + 90,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-12000:]
    assert "Stateful" in report, report[-4000:]
    status, clusters = svc.api("GET", "/clusters")
    assert status == 200
    assert any(c["name"] == "example" for c in clusters), "no cluster created from the example"
