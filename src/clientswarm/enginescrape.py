"""Scraping a target's engine metrics (its Prometheus ``/metrics``) during a run.

One :class:`EngineScraper` per target scrapes every URL of ``target.metrics`` (replicas of one
target) once per ``interval_s``, at absolute times from the cluster's shared start (never
drifting), parses each answer (:func:`~clientswarm.metrics.engine.parse_exposition`), merges the
replicas' answers of one moment (:func:`~clientswarm.metrics.engine.merge_replicas`) and hands
the result to ``on_scrape``. The service runs it when it can reach the target; worker 0 runs it
when only the compute nodes can, and ships each scrape to the service.

A scrape that fails (no answer, an HTTP error, not the Prometheus format) is told to
``on_problem`` once, and again when the failure changes or every :data:`REPEAT_PROBLEM_S`
while it lasts; it never fails the run. With the default (no URL given: the target's own
``/metrics``), a target that has no such page at its first :data:`GIVE_UP_AFTER` scrapes is
simply not scraped (a line of the log says so): it is no inference engine, or keeps its
metrics elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from clientswarm.config.models import ClusterConfig, TargetConfig
from clientswarm.errors import ClientswarmError
from clientswarm.metrics.engine import ScrapeValues, merge_replicas, parse_exposition

log = logging.getLogger(__name__)

MAX_PAGE_BYTES = 16 << 20
"""The most of one metrics page read (a vLLM page is tens of kilobytes)."""

REPEAT_PROBLEM_S = 30.0
"""A lasting failure is told again this often."""

LAST_SCRAPE_AFTER_S = 0.5
"""The last scrape waits this long after the run's end: vLLM counts a finished request (and
its tokens) a moment after the answer's last byte left (2 of 249 requests were missing
without it)."""
LAST_SCRAPE_TRIES = 3
"""Tries of the last scrape (each after :data:`LAST_SCRAPE_AFTER_S`) until one reads a page."""

GIVE_UP_AFTER = 3
"""Scrapes of the default URL that find no metrics page, in a row from the first, before it is
no longer looked for."""

OnScrape = Callable[[str, float, ScrapeValues], Awaitable[None]]
"""(target name, seconds from the shared start, the merged scrape)."""

OnProblem = Callable[[str, str], Awaitable[None]]
"""(target name, one line saying what failed)."""


class ScrapeFailed(ClientswarmError):
    """One URL could not be scraped; the message says why, in one line. ``missing``: there is
    no metrics page there (nothing listens, 404, not the Prometheus format), as opposed to
    one that did not answer in time or failed."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def metrics_urls(target: TargetConfig) -> list[str]:
    """The URLs a target's engine metrics are read from: those given, else each replica's
    ``/metrics`` (merged as one engine's; none when ``metrics: false``)."""
    settings = target.metrics
    if not settings.enabled:
        return []
    return list(settings.urls) or [url + "/metrics" for url in target.replica_urls]


async def fetch_page(session: aiohttp.ClientSession, url: str, timeout_s: float) -> str:
    """The text of one metrics page; ScrapeFailed with the reason."""
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with session.get(url, timeout=timeout) as response:
            if response.status != 200:
                raise ScrapeFailed(
                    f"{url} answered HTTP {response.status}", missing=response.status in (404, 405)
                )
            body = await response.content.read(MAX_PAGE_BYTES + 1)
    except ScrapeFailed:
        raise
    except TimeoutError:
        raise ScrapeFailed(f"{url} did not answer within {timeout_s:g} s") from None
    except aiohttp.ClientConnectorError as exc:  # nothing listens there
        raise ScrapeFailed(f"{url}: {type(exc).__name__}: {exc}"[:300], missing=True) from None
    except aiohttp.ClientError as exc:
        raise ScrapeFailed(f"{url}: {type(exc).__name__}: {exc}"[:300]) from None
    if len(body) > MAX_PAGE_BYTES:
        raise ScrapeFailed(f"{url} sent more than {MAX_PAGE_BYTES >> 20} MiB")
    return body.decode("utf-8", errors="replace")


@dataclass
class EngineScraper:
    """Scrapes one target's metrics URLs every ``interval_s`` until cancelled."""

    target: str
    urls: Sequence[str]
    interval_s: float
    extra_series: Sequence[str]
    start_ns: int
    on_scrape: OnScrape
    on_problem: OnProblem
    auto: bool = True
    """The URLs are the default (the target's own ``/metrics``): a target without one at the
    first scrape is not scraped further."""
    end_s: float | None = None
    """Stop by itself after this many seconds from the shared start (None: when cancelled)."""
    scraped: int = 0
    """Scrapes that worked so far."""
    off: bool = False
    """Given up: the default URL had no metrics page at the first scrape."""
    _problem: str | None = None
    _told_at: float = 0.0
    _missing: int = 0

    @property
    def timeout_s(self) -> float:
        """How long one scrape may take: two intervals, from 2 s to 5 s (an engine busy on a
        small machine can take more than a second to write its page)."""
        return max(2.0, min(5.0, 2 * self.interval_s))

    async def run(self) -> None:
        """Scrape until cancelled (or ``end_s``), at absolute times from the shared start."""
        async with aiohttp.ClientSession() as session:
            # A first scrape at once, before the clients start (the service starts scraping
            # as it fixes the start time): the counters' baseline.
            await self.scrape(session)
            elapsed_s = time.time() - self.start_ns / 1e9
            tick = max(0, math.floor(elapsed_s / self.interval_s) + 1)
            while not self.off:
                at_s = tick * self.interval_s
                if self.end_s is not None and at_s > self.end_s:
                    return
                delay = self.start_ns / 1e9 + at_s - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tick += 1
                await self.scrape(session)

    async def last(self) -> None:
        """One more scrape, once the run has ended and :data:`LAST_SCRAPE_AFTER_S` more have
        passed (an engine counts a request just after its answer leaves): the counters then
        hold every request. Tried again, up to :data:`LAST_SCRAPE_TRIES` times, while it
        reads no page."""
        if self.off or self.scraped == 0:  # nothing to complete: no page was ever read
            return
        async with aiohttp.ClientSession() as session:
            for _ in range(LAST_SCRAPE_TRIES):  # a busy engine may miss one: the end matters
                await asyncio.sleep(LAST_SCRAPE_AFTER_S)
                read = self.scraped
                await self.scrape(session)
                if self.scraped > read or self.off:
                    return

    async def scrape(self, session: aiohttp.ClientSession) -> None:
        """Scrape every URL once, and tell what came of it."""
        try:
            pages = await asyncio.gather(
                *(fetch_page(session, url, self.timeout_s) for url in self.urls)
            )
            parsed = [self._parse(url, page) for url, page in zip(self.urls, pages, strict=True)]
        except ScrapeFailed as exc:
            line = str(exc)
            if self.auto and self.scraped == 0:
                # Not given, not (yet) read: a target that is no inference engine, or keeps
                # no page there; not a problem. Given up once it is clear (a busy server may
                # drop one connection or answer one scrape late).
                self._missing += 1
                if self._missing >= GIVE_UP_AFTER:
                    log.info(
                        "target %s: no engine metrics (%s); not scraping them", self.target, line
                    )
                    self.off = True
                return
            now = time.monotonic()
            if line != self._problem or now - self._told_at >= REPEAT_PROBLEM_S:
                self._problem, self._told_at = line, now
                await self.on_problem(self.target, f"engine metrics scrape failed: {line}")
            return
        if self._problem is not None:
            await self.on_problem(self.target, "engine metrics scrape works again")
            self._problem = None
        self.scraped += 1
        offset_s = (time.time_ns() - self.start_ns) / 1e9
        await self.on_scrape(self.target, offset_s, merge_replicas(parsed))

    def _parse(self, url: str, page: str) -> ScrapeValues:
        try:
            return parse_exposition(page, self.extra_series)
        except ValueError as exc:
            raise ScrapeFailed(
                f"{url} is not a Prometheus metrics page: {exc}"[:300], missing=True
            ) from None


Side = Literal["service", "worker"]
"""Who scrapes a cluster's targets."""


def scraper_side(config: ClusterConfig) -> Side:
    """Who scrapes the cluster's targets: the service for local workers, else worker 0; a
    target's ``metrics.scraper`` other than ``auto`` decides (the first such)."""
    for target in config.target_map().values():
        if target.metrics.enabled and target.metrics.scraper != "auto":
            return target.metrics.scraper
    return "service" if config.spawner.kind == "local" else "worker"


def scraped_targets(config: ClusterConfig) -> dict[str, list[str]]:
    """The targets whose engine metrics are scraped, with their URLs."""
    found = {}
    for name, target in config.target_map().items():
        urls = metrics_urls(target)
        if urls:
            found[name] = urls
    return found


def scrapers(
    config: ClusterConfig,
    start_ns: int,
    on_scrape: OnScrape,
    on_problem: OnProblem,
) -> list[EngineScraper]:
    """One scraper per scraped target of ``config``."""
    targets = config.target_map()
    return [
        EngineScraper(
            target=name,
            urls=urls,
            interval_s=targets[name].metrics.interval_s,
            extra_series=targets[name].metrics.series,
            start_ns=start_ns,
            on_scrape=on_scrape,
            on_problem=on_problem,
            auto=not targets[name].metrics.urls,
        )
        for name, urls in scraped_targets(config).items()
    ]


def values_to_json(values: ScrapeValues) -> dict[str, Any]:
    """A scrape as JSON-able data (a histogram's +Inf bound as null)."""
    return {
        "engine": values.engine,
        "gauges": values.gauges,
        "counters": values.counters,
        "histograms": {
            name: [[None if math.isinf(le) else le, count] for le, count in buckets]
            for name, buckets in values.histograms.items()
        },
        "histogram_sums": values.histogram_sums,
        "extra": values.extra,
    }


def values_from_json(data: Mapping[str, Any]) -> ScrapeValues:
    """The scrape :func:`values_to_json` wrote; what is not a number in it is left out (a
    worker sent it: it must not break the summary)."""

    def mapping(key: str) -> Mapping[Any, Any]:
        found = data.get(key)
        return found if isinstance(found, Mapping) else {}

    def numbers(key: str) -> dict[str, float]:
        return {str(k): float(v) for k, v in mapping(key).items() if _is_number(v)}

    histograms: dict[str, list[tuple[float, float]]] = {}
    for name, buckets in mapping("histograms").items():
        if isinstance(buckets, list) and all(
            isinstance(b, list)
            and len(b) == 2
            and (b[0] is None or _is_number(b[0]))
            and _is_number(b[1])
            for b in buckets
        ):
            histograms[str(name)] = [
                (math.inf if le is None else float(le), float(n)) for le, n in buckets
            ]
    engine = data.get("engine")
    return ScrapeValues(
        engine=engine if isinstance(engine, str) else None,
        gauges=numbers("gauges"),
        counters=numbers("counters"),
        histograms=histograms,
        extra=numbers("extra"),
        histogram_sums=numbers("histogram_sums"),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "MAX_PAGE_BYTES",
    "REPEAT_PROBLEM_S",
    "EngineScraper",
    "OnProblem",
    "OnScrape",
    "ScrapeFailed",
    "Side",
    "fetch_page",
    "metrics_urls",
    "scraped_targets",
    "scraper_side",
    "scrapers",
    "values_from_json",
    "values_to_json",
]
