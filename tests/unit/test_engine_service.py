"""The service's side of engine metrics (clientswarm.service.engine_metrics and
clientswarm.enginescrape): who scrapes, the configuration's forms, the stored form of a scrape,
and the server block's windows per group and stage."""

from __future__ import annotations

import math
from typing import Any

import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.config.models import ClusterConfig, TargetConfig
from clientswarm.enginescrape import metrics_urls, scraper_side, values_from_json, values_to_json
from clientswarm.load.stage_plan import stage_plans
from clientswarm.metrics.engine import ScrapeValues
from clientswarm.service.engine_metrics import server_block, server_series


def _config(target: dict[str, Any], **extra: Any) -> ClusterConfig:
    return validate_config_data(
        {
            "name": "engine",
            "target": {"url": "http://127.0.0.1:8000", **target},
            "groups": [
                {
                    "name": "chat",
                    "interaction": {"kind": "chat"},
                    "load": {"kind": "sweep", "concurrencies": [1, 2], "stage_s": 10},
                }
            ],
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("given", "urls"),
    [
        (True, ["http://t:8000/metrics"]),
        (False, []),
        ("http://m:9/metrics", ["http://m:9/metrics"]),
        (["http://a/m", "http://b/m"], ["http://a/m", "http://b/m"]),
        ({"interval_s": 2}, ["http://t:8000/metrics"]),
    ],
)
def test_the_forms_of_target_metrics(given: Any, urls: list[str]) -> None:
    assert metrics_urls(TargetConfig(url="http://t:8000", metrics=given)) == urls


def test_who_scrapes() -> None:
    assert scraper_side(_config({})) == "service"  # local workers: the service reaches it
    assert scraper_side(_config({}, spawner={"kind": "slurm"})) == "worker"
    assert scraper_side(_config({"metrics": {"scraper": "worker"}})) == "worker"


def test_a_scrape_survives_its_stored_form() -> None:
    values = ScrapeValues(
        engine="vllm",
        gauges={"running": 3.0},
        counters={"prompt_tokens": 10.0},
        histograms={"ttft_s": [(0.1, 1.0), (math.inf, 2.0)]},
        extra={"x": 1.0},
        histogram_sums={"ttft_s": 0.3},
    )
    assert values_from_json(values_to_json(values)) == values
    # What a worker sends is checked: what is not a number is left out, never an error.
    odd = values_from_json(
        {"engine": 5, "gauges": {"running": "x", "waiting": 1}, "histograms": {"h": "no"}}
    )
    assert odd.engine is None and odd.gauges == {"waiting": 1.0} and odd.histograms == {}


def _rows() -> list[tuple[str, float, dict[str, Any]]]:
    rows = []
    for t in range(0, 21):  # one scrape a second for 20 s: 1 running in stage 0, 2 in stage 1
        running = 1.0 if t <= 10 else 2.0
        values = ScrapeValues("vllm", {"running": running}, {"prompt_tokens": 5.0 * t}, {}, {})
        rows.append(("default", float(t), values_to_json(values)))
    return rows


def test_the_server_block_summarises_the_run_each_group_and_each_stage() -> None:
    config = _config({})
    plans = {g.name: stage_plans(g, config.warmup_s) for g in config.groups}
    clients = {"default": {"ttft_s": {"mean": 0.012, "p50": 0.011}}}
    block = server_block(config, _rows(), plans, clients)
    assert block is not None
    server = block["default"]
    assert server["engine"] == "vllm" and server["scrapes"] == 21
    assert server["prompt_tokens"] == 100.0
    assert server["running"]["max"] == 2.0
    stages = server["groups"]["chat"]["stages"]
    assert [st["stage"] for st in stages] == [0, 1]
    assert stages[0]["running"]["max"] == 1.0 and stages[1]["running"]["max"] == 2.0
    assert stages[0]["prompt_tokens"] == 50.0 and stages[1]["prompt_tokens"] == 50.0
    assert server["vs_client"]["ttft_s"]["client_mean"] == 0.012
    assert server["vs_client"]["ttft_s"]["gap_mean_s"] is None  # no engine TTFT scraped
    series = server_series(_rows())["default"]
    assert series["t_s"][:3] == [0.0, 1.0, 2.0] and series["running"][-1] == 2.0
    assert server_block(config, [], plans, clients) is None
