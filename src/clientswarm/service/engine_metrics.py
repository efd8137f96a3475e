"""The engine metrics of a cluster's targets: scraped during its run, stored as its time
series, summarised in ``summary.json``'s ``server`` block.

- **Who scrapes** (:func:`scraper_side`): the service when its workers run on its machine (the
  ``local`` spawner), else worker 0, which reaches what the clients reach and posts each scrape
  to the service (``POST …/workers/0/engine-metrics``); ``target.metrics.scraper`` may say
  which. The service only reaches URLs its operator allows as targets (checked when the
  configuration is admitted). :mod:`clientswarm.enginescrape` does the scraping.
- **Stored**: one row per scrape of a target (its replicas merged), with the seconds from the
  shared start (:meth:`~clientswarm.store.Store.add_engine_scrapes`); the latest of each
  target is kept for the live views. A failed scrape is an ``engine_metrics`` event, never a
  failure of the run.
- **Summarised** (:func:`server_block`), per target: over the measured run (from ``warmup_s``
  to the last scrape), per group over its own time, and per load stage over the stage's
  measured window (its ``stage_warmup_s`` left out), with
  :func:`~clientswarm.metrics.engine.summarise`; and ``vs_client``: the engine's own TTFT and
  E2E beside the clients' exact ones. The clients' are longer by what happens outside the
  engine's clock: the network both ways, the HTTP server, tokenisation before the request
  reaches the engine and the streaming of its answer. The engine's queue time is inside both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from clientswarm.config.models import ClusterConfig
from clientswarm.enginescrape import (
    EngineScraper,
    scraped_targets,
    scraper_side,
    scrapers,
    values_from_json,
    values_to_json,
)
from clientswarm.metrics.engine import ScrapeValues, TimedScrape, summarise
from clientswarm.metrics.summary import StagePlan

if TYPE_CHECKING:
    from clientswarm.service.journal import Journal
    from clientswarm.store import Store

log = logging.getLogger(__name__)

EVENT_KIND = "engine_metrics"
"""The kind of the events that say a scrape failed, or works again."""

GAP_NOTE = (
    "client minus engine: the network both ways, the HTTP server, tokenisation before the "
    "engine and the streaming of the answer; the engine's queue time is inside both"
)

LIVE_GAUGES = ("running", "waiting", "kv_cache_usage")
"""The gauges the live views show of each target's latest scrape."""


class EngineMetrics:
    """The scrapes of every cluster the service follows: the service's own scrapers, the
    scrapes worker 0 posts, their storage, events and latest values."""

    def __init__(self, store: Store, journal: Journal) -> None:
        self.store = store
        self.journal = journal
        self._tasks: dict[str, list[tuple[EngineScraper, asyncio.Task[None]]]] = {}
        self._latest: dict[str, dict[str, dict[str, Any]]] = {}

    def start(self, cluster_id: str, config: ClusterConfig, start_ns: int) -> None:
        """Start scraping a cluster's targets from the service, if it is the service's to do
        (and not already started)."""
        if cluster_id in self._tasks or scraper_side(config) != "service":
            return

        async def on_scrape(target: str, t_s: float, values: ScrapeValues) -> None:
            await self.record(cluster_id, [(target, t_s, values_to_json(values))])

        async def on_problem(target: str, line: str) -> None:
            await self.problem(cluster_id, target, line)

        running = scrapers(config, start_ns, on_scrape, on_problem)
        self._tasks[cluster_id] = [(s, asyncio.create_task(s.run())) for s in running]

    async def stop(self, cluster_id: str) -> None:
        """Stop the service's scrapers of a cluster (its run has ended), after one last
        scrape each, so that the counters hold every request."""
        running = self._tasks.pop(cluster_id, [])
        for _, task in running:
            task.cancel()
        for scraper, task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            try:
                await scraper.last()
            except Exception:  # a failed scrape is told as a problem; anything else is a bug
                log.exception("cluster %s: the last engine-metrics scrape failed", cluster_id)
        self._latest.pop(cluster_id, None)

    async def record(
        self, cluster_id: str, scrapes: list[tuple[str, float, dict[str, Any]]]
    ) -> None:
        """Store scrapes (target, seconds from the start, values as JSON) and keep each
        target's latest gauges."""
        latest = self._latest.setdefault(cluster_id, {})
        for target, t_s, values in scrapes:
            gauges = values.get("gauges") or {}
            latest[target] = {
                "t_s": t_s,
                "engine": values.get("engine"),
                **{name: gauges.get(name) for name in LIVE_GAUGES},
            }
        await asyncio.to_thread(self.store.add_engine_scrapes, cluster_id, scrapes)

    async def problem(self, cluster_id: str, target: str, line: str) -> None:
        """Say that a target's scrape failed (or works again), as an event."""
        log.info("cluster %s: target %s: %s", cluster_id, target, line)
        await self.journal.event(cluster_id, EVENT_KIND, f"target {target}: {line}")

    def latest(self, cluster_id: str) -> dict[str, dict[str, Any]]:
        """Each scraped target's latest gauges (running, waiting, KV-cache usage)."""
        return dict(self._latest.get(cluster_id, {}))


def timed_scrapes(
    rows: Sequence[tuple[str, float, dict[str, Any]]],
) -> dict[str, list[TimedScrape]]:
    """Stored scrapes by target, in time order."""
    by_target: dict[str, list[TimedScrape]] = {}
    for target, t_s, values in rows:
        by_target.setdefault(target, []).append(TimedScrape(t_s, values_from_json(values)))
    for scrapes in by_target.values():
        scrapes.sort(key=lambda scrape: scrape.t_s)
    return by_target


def _vs_client(engine: Mapping[str, Any], client: Mapping[str, Any] | None) -> dict[str, Any]:
    """The engine's TTFT and E2E beside the clients' (means exact on both sides)."""
    out: dict[str, Any] = {"note": GAP_NOTE}
    for metric in ("ttft_s", "e2e_s"):
        mine = (client or {}).get(metric) or {}
        theirs = engine.get(metric) or {}
        client_mean, engine_mean = mine.get("mean"), theirs.get("mean")
        out[metric] = {
            "client_mean": client_mean,
            "engine_mean": engine_mean,
            "gap_mean_s": (
                client_mean - engine_mean
                if client_mean is not None and engine_mean is not None
                else None
            ),
            "client_p50": mine.get("p50"),
            "engine_p50": theirs.get("p50"),
        }
    queue = engine.get("queue_s") or {}
    out["engine_queue_mean_s"] = queue.get("mean")
    return out


def server_block(
    config: ClusterConfig,
    rows: Sequence[tuple[str, float, dict[str, Any]]],
    plans: Mapping[str, Sequence[StagePlan]],
    client_targets: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any] | None:
    """``summary.json``'s ``server`` block: per scraped target, its engine's statistics over
    the measured run, per group and per stage, and beside the clients' numbers (see the
    module docstring). None when nothing was scraped."""
    by_target = timed_scrapes(rows)
    if not by_target:
        return None
    targets = config.target_map()
    block: dict[str, Any] = {}
    for name, scrapes in by_target.items():
        if name not in targets:
            continue
        end_s = scrapes[-1].t_s
        whole = summarise(scrapes, config.warmup_s, end_s)
        groups: dict[str, Any] = {}
        for group in config.groups:
            if config.target_name_of(group) != name:
                continue
            group_end = group.duration_s
            until = end_s if group_end is None else min(end_s, config.warmup_s + group_end)
            entry: dict[str, Any] = {"run": summarise(scrapes, config.warmup_s, until)}
            stages = plans.get(group.name) or []
            if stages:
                entry["stages"] = [
                    {
                        "stage": plan.stage,
                        **summarise(
                            scrapes,
                            plan.start_offset_s + plan.stage_warmup_s,
                            plan.start_offset_s + plan.planned_s,
                        ),
                    }
                    for plan in stages
                ]
            groups[group.name] = entry
        block[name] = {
            **whole,
            "urls": scraped_targets(config).get(name, []),
            "groups": groups,
            "vs_client": _vs_client(whole, client_targets.get(name)),
        }
    return block or None


def server_series(rows: Sequence[tuple[str, float, dict[str, Any]]]) -> dict[str, Any]:
    """The engine's gauges over time, per target, for the time series document."""
    series: dict[str, Any] = {}
    for name, scrapes in timed_scrapes(rows).items():
        series[name] = {
            "t_s": [round(s.t_s, 3) for s in scrapes],
            **{gauge: [s.values.gauges.get(gauge) for s in scrapes] for gauge in LIVE_GAUGES},
        }
    return series


__all__ = [
    "EVENT_KIND",
    "GAP_NOTE",
    "LIVE_GAUGES",
    "EngineMetrics",
    "scraped_targets",
    "scraper_side",
    "scrapers",
    "server_block",
    "server_series",
    "timed_scrapes",
    "values_from_json",
    "values_to_json",
]
