"""Every query of the shipped Grafana dashboard answers with data from a real run.

A real cluster (local workers) loads the real simulator, which fails a share of the requests,
through a real ``clientswarm serve``; a real Prometheus finds the service through HTTP service
discovery and scrapes it every second, as in tests/integration/test_service.py. Then every
panel query of deploy/grafana/clientswarm.json, with the dashboard variables filled in as
Grafana would (All, or the run's real values), is evaluated at a moment of the run through
Prometheus' query API, and every variable query through its label API. Grafana itself cannot
run here: the JSON's structure is checked in tests/unit/test_grafana_dashboard.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest

from prometheus_server import PrometheusServer, prometheus_server
from service_process import ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "clientswarm.json"
TOKEN = "grafana-token"
#: What Grafana's $__rate_interval is with a 1 s scrape interval (4 scrapes), and a bit more.
RATE_INTERVAL = "5s"
GROUPS = ("chat", "hello", "talk")
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
_LABEL_VALUES = re.compile(r"^label_values\((?P<match>.+), (?P<label>\w+)\)$")


def run_config(url: str) -> dict[str, Any]:
    """Three groups, so that every series has data: streamed chat (TTFT, ITL, TPOT), an
    open-loop group (schedule lag), a conversation (steps turn-1, turn-2), and a warm-up."""
    duration = {"stop": {"duration_s": 7}}
    return {
        "name": "grafana-run",
        "seed": 3,
        "warmup_s": 1,
        "target": {"url": url, "model": "mock-model", "timeout_s": 10},
        "spawner": {"kind": "local", "workers": 2},
        "groups": [
            {
                "name": "chat",
                "clients": 4,
                "interaction": {"kind": "chat", "max_tokens": 8},
                "load": {"kind": "closed", "think_time_s": 0.05},
                **duration,
            },
            {
                "name": "hello",
                "clients": 2,
                "interaction": {"kind": "hello"},
                "load": {"kind": "open", "rate": 20, "arrival": "constant"},
                **duration,
            },
            {
                "name": "talk",
                "clients": 2,
                "interaction": {"kind": "conversation", "turns": 2, "max_tokens": 8},
                "load": {"kind": "closed", "think_time_s": 0.05},
                **duration,
            },
        ],
    }


def fill(text: str, values: dict[str, str]) -> str:
    """A query with the dashboard's variables replaced by ``values``, as Grafana sends it."""
    filled = text.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "1s")

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AssertionError(f"{text!r} uses ${name}, which the test does not fill in")
        return values[name]

    return _VARIABLE.sub(value, filled)


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, PromQL, legend) of every target of every panel, rows' panels included."""
    out = []
    for panel in board["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            out += [(p["title"], t["expr"], t["legendFormat"]) for t in p.get("targets", [])]
    return out


async def wait_for_measured_requests(prom: PrometheusServer, cluster_id: str) -> None:
    """Until Prometheus has scraped measured requests of every group of the cluster."""
    expr = f'count(sum by (group) (clientswarm_requests_total{{cluster="{cluster_id}"}}) > 0)'
    deadline = time.monotonic() + 30
    while await prom.query_value(expr) != len(GROUPS):
        if time.monotonic() > deadline:
            raise prom.fail(f"no measured requests of every group after 30 s ({expr})")
        await asyncio.sleep(0.25)


async def evaluate(prom: PrometheusServer, expr: str, at_s: float) -> list[dict[str, Any]]:
    data = await prom.api("query", query=expr, time=f"{at_s:.3f}")
    assert data["resultType"] == "vector", (expr, data)
    result: list[dict[str, Any]] = data["result"]
    return result


async def check_dashboard(svc: ServiceProcess, target: str, tmp_path: Path) -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    sd_url = f"{svc.url}/api/v1/monitor/targets"
    async with prometheus_server(sd_url, tmp_path, token=TOKEN) as prom:
        await prom.wait_for_target()
        status, created = svc.api("POST", "/clusters", run_config(target))
        assert status == 201, created
        cluster_id = created["id"]
        await wait_for_measured_requests(prom, cluster_id)
        await asyncio.sleep(3)  # a full rate window of measured load, several scrapes
        at_s = time.time()
        view = await asyncio.to_thread(svc.wait_status, cluster_id)
        assert view["status"] == "completed", view
        await asyncio.sleep(1.5)  # a scrape after at_s

        settings = [
            {"cluster": ".*", "group": ".*"},  # All
            {"cluster": cluster_id, "group": "(" + "|".join(GROUPS) + ")"},  # picked by hand
        ]
        empty = []
        for values in settings:
            for title, expr, legend in panel_queries(board):
                query = fill(expr, values)
                result = await evaluate(prom, query, at_s)
                finite = [s for s in result if math.isfinite(float(s["value"][1]))]
                # The legend names labels that the answer's series carry (not empty).
                labels = re.findall(r"\{\{(\w+)\}\}", legend)
                if not any(all(s["metric"].get(label) for label in labels) for s in finite):
                    empty.append(f"{title}: {query} (legend {legend}) -> {result}")
        assert not empty, "queries without a labelled value:\n" + "\n".join(empty)

        variables = {v["name"]: v for v in board["templating"]["list"]}
        found = {}
        for name in ("cluster", "group"):
            spec = _LABEL_VALUES.match(variables[name]["query"])
            assert spec is not None, variables[name]["query"]
            match = fill(spec["match"], {"cluster": cluster_id})
            found[name] = await prom.api(f"label/{spec['label']}/values", **{"match[]": match})
        assert found == {"cluster": [cluster_id], "group": sorted(GROUPS)}


def test_every_dashboard_query_returns_data_from_a_real_run(tmp_path: Path) -> None:
    (tmp_path / "prom").mkdir()
    mock_args = ("--ttft-ms", "20", "--itl-ms", "5", "--seed", "5", "--error-rate-500", "0.2")
    with simulator(*mock_args) as target, ServiceProcess(tmp_path / "svc", token=TOKEN) as svc:
        asyncio.run(check_dashboard(svc, target, tmp_path / "prom"))
