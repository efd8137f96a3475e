"""Exporting a cluster's telemetry over OpenTelemetry (OTLP/HTTP, protobuf) while it runs.

The service exports, not the workers: it has every committed sample (each batch once, after
the store has it) and the live statistics ``/metrics`` shows, so one exporter per cluster sends
both, the endpoint's credentials stay in the service's environment, and nothing is added to a
worker's hot path. What is sent is :mod:`clientswarm.service.otlp`'s.

- **When**: every ``interval_s`` from the shared start (absolute times, never drifting), and a
  last time when the cluster ends, once every batch is in: the metrics (cumulative, so the last
  export holds the run's final counts) and the samples committed since the previous export.
- **Never failing or slowing a run**: committed batches wait in a bounded queue
  (``max_queue`` samples; beyond it they are dropped and counted); each request has a timeout
  (``timeout_s``); encoding runs off the event loop. Samples whose export failed wait for the
  next one (the queue still bounded); at the end, what cannot be sent is counted as dropped.
  A failure, a recovery and dropped samples are ``telemetry`` events of the cluster, the same
  failure told again only every :data:`REPEAT_PROBLEM_S`.
- **Reach**: the endpoint is checked against ``serve --allow-target`` and the variables its
  headers come from against ``--allow-env`` when the configuration is admitted
  (:mod:`clientswarm.service.admission`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp

from clientswarm.config.models import ClusterConfig
from clientswarm.config.telemetry import OtlpConfig, Signal
from clientswarm.errors import ClientswarmError
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.live import LiveStats

if TYPE_CHECKING:
    from clientswarm.service.journal import Journal

log = logging.getLogger(__name__)

EVENT_KIND = "telemetry"
"""The kind of the events that say an export failed, works again, or dropped samples."""

EXTRA = "pip install 'clientswarm[otel]'"
PROTO_MODULE = "opentelemetry.proto"

SPANS_PER_REQUEST = 2000
"""Samples sent in one trace export request at most."""

REPEAT_PROBLEM_S = 30.0
"""A lasting failure is told again this often."""

CONTENT_TYPE = "application/x-protobuf"

OnProblem = Callable[[str], Awaitable[None]]


class ExportFailed(ClientswarmError):
    """One export request failed; the message says why, in one line."""


def missing_extra() -> str | None:
    """What to install for OTLP export, when its library is missing here (None: it is not)."""
    try:
        if importlib.util.find_spec(PROTO_MODULE) is not None:
            return None
    except (ImportError, ValueError):  # a broken installation: as good as none
        pass
    return f"needs the opentelemetry-proto package, which is not installed here: {EXTRA}"


def export_headers(
    otlp: OtlpConfig, environ: dict[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The headers of every export request, and one line per variable that is not set."""
    source = os.environ if environ is None else environ
    headers = {**otlp.headers, "Content-Type": CONTENT_TYPE}
    unset = []
    for header, name in otlp.headers_from_env.items():
        value = source.get(name)
        if value is None:
            unset.append(f"header {header}: environment variable {name} is not set; sent without")
        else:
            headers[header] = value
    return headers, unset


class SampleQueue:
    """Committed batches waiting for export, at most ``limit`` samples; safe from any thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        """Samples dropped so far (the queue was full, or they could not be sent at the end)."""
        self._lock = threading.Lock()
        self._batches: deque[SampleColumns] = deque()
        self._count = 0

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def add(self, cols: SampleColumns) -> None:
        """Queue a batch, or count it dropped when it does not fit. Never raises."""
        with self._lock:
            if self._count + len(cols) > self.limit:
                self.dropped += len(cols)
                return
            self._batches.append(cols)
            self._count += len(cols)

    def take(self, most: int) -> list[SampleColumns]:
        """The oldest batches, about ``most`` samples (at least one batch when any waits)."""
        taken: list[SampleColumns] = []
        with self._lock:
            n = 0
            while self._batches and (not taken or n + len(self._batches[0]) <= most):
                cols = self._batches.popleft()
                taken.append(cols)
                n += len(cols)
            self._count -= n
        return taken

    def put_back(self, batches: list[SampleColumns]) -> None:
        """Return batches that could not be sent to the front, in order."""
        with self._lock:
            self._batches.extendleft(reversed(batches))
            self._count += sum(len(cols) for cols in batches)

    def lost(self, n: int) -> None:
        """Count ``n`` samples taken that will never be sent."""
        with self._lock:
            self.dropped += n

    def drop_all(self) -> int:
        """Drop every waiting sample (counted); how many."""
        with self._lock:
            n = self._count
            self._batches.clear()
            self._count = 0
            self.dropped += n
        return n


class ClusterExport:
    """One cluster's exporter: its queue, its loop and its last export."""

    def __init__(
        self,
        cluster_id: str,
        config: ClusterConfig,
        otlp: OtlpConfig,
        live: LiveStats,
        start_ns: int,
        on_problem: OnProblem,
    ) -> None:
        from clientswarm.service import otlp as encode  # the otel extra, loaded only when used

        self.encode = encode
        self.cluster_id = cluster_id
        self.otlp = otlp
        self.live = live
        self.start_ns = start_ns
        self.on_problem = on_problem
        self.queue = SampleQueue(otlp.max_queue)
        self.headers, self.unset = export_headers(otlp)
        self.groups = encode.group_attributes(config)
        self.resource = encode.resource_attributes(cluster_id, config, otlp.resource)
        self._problem: str | None = None
        self._told_at = 0.0
        self._told_dropped = 0

    @property
    def wants_samples(self) -> bool:
        """Whether samples are exported."""
        return "samples" in self.otlp.export

    def add(self, cols: SampleColumns) -> None:
        """Take a committed batch (from any thread); never raises."""
        if self.wants_samples and len(cols):
            self.queue.add(cols)

    async def run(self) -> None:
        """Export every ``interval_s`` from the shared start until cancelled."""
        for line in self.unset:
            await self.on_problem(line)
        async with aiohttp.ClientSession() as session:
            interval_s = self.otlp.interval_s
            tick = max(1, math.floor((time.time_ns() - self.start_ns) / 1e9 / interval_s) + 1)
            while True:
                delay = (self.start_ns + tick * interval_s * 1e9 - time.time_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                tick += 1
                try:
                    await self.export(session, final=False)
                except Exception:  # a failed export is told; anything else must not end these
                    log.exception("cluster %s: an OTLP export failed", self.cluster_id)

    async def final(self) -> None:
        """The last export, once every batch is in: the final metrics and every sample left,
        within :attr:`final_timeout_s`; what cannot be sent is counted as dropped."""
        async with aiohttp.ClientSession() as session:
            try:
                await asyncio.wait_for(self.export(session, final=True), self.final_timeout_s)
            except TimeoutError:
                self.queue.drop_all()
                await self._tell([f"the last OTLP export took over {self.final_timeout_s:g} s"])

    @property
    def final_timeout_s(self) -> float:
        """How long the last export may take in all: two requests' time."""
        return 2 * self.otlp.timeout_s

    async def export(self, session: aiohttp.ClientSession, *, final: bool) -> None:
        """Send the metrics and the waiting samples once; tell what failed. The last export
        (``final``) gives up on the samples once a request failed."""
        problems: list[str] = []
        if "metrics" in self.otlp.export:
            try:
                body = await asyncio.to_thread(self._metrics_body)
                await self._post(session, "metrics", body)
            except ExportFailed as exc:
                problems.append(str(exc))
        if self.wants_samples and not (final and problems):
            try:
                await self._send_samples(session)
            except ExportFailed as exc:
                problems.append(str(exc))
        if final:
            self.queue.drop_all()  # none left, unless a request failed
        await self._tell(problems)

    async def _send_samples(self, session: aiohttp.ClientSession) -> None:
        while batches := self.queue.take(SPANS_PER_REQUEST):
            try:
                body = await asyncio.to_thread(self._spans_body, batches)
                await self._post(session, "samples", body)
            except (ExportFailed, asyncio.CancelledError):
                self.queue.put_back(batches)  # the next export tries them again
                raise
            except Exception:
                self.queue.lost(sum(len(cols) for cols in batches))  # would fail again
                raise

    def _metrics_body(self) -> bytes:
        now_s = time.time()
        window = self.live.snapshot(now_s)["window_10s"]["groups"]
        rates = {
            group: self.encode.Rates(stats["request_rate"], stats["output_token_rate"])
            for group, stats in window.items()
        }
        request = self.encode.metrics_request(
            self.resource,
            self.groups,
            self.live.since_start(),
            rates,
            self.live.active_clients,
            start_ns=self.start_ns,
            now_ns=int(now_s * 1e9),
        )
        return bytes(request.SerializeToString())

    def _spans_body(self, batches: list[SampleColumns]) -> bytes:
        cols = SampleColumns.concat(batches)
        request = self.encode.spans_request(self.cluster_id, self.resource, self.groups, cols)
        return bytes(request.SerializeToString())

    async def _post(self, session: aiohttp.ClientSession, signal: Signal, body: bytes) -> None:
        url = self.otlp.url(signal)
        timeout = aiohttp.ClientTimeout(total=self.otlp.timeout_s)
        try:
            async with session.post(
                url, data=body, headers=self.headers, timeout=timeout
            ) as response:
                if response.status // 100 != 2:
                    text = (await response.content.read(200)).decode("utf-8", "replace")
                    raise ExportFailed(
                        f"export of {signal} to {url} failed: HTTP {response.status} "
                        f"{text.strip()}".strip()[:300]
                    )
                await response.read()
        except TimeoutError:
            raise ExportFailed(
                f"export of {signal} to {url} failed: no answer within {self.otlp.timeout_s:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ExportFailed(
                f"export of {signal} to {url} failed: {type(exc).__name__}: {exc}"[:300]
            ) from None

    async def _tell(self, problems: list[str]) -> None:
        """Say what failed (once, again when it changes or every :data:`REPEAT_PROBLEM_S`),
        that it works again, and how many samples were dropped since last said."""
        line = "; ".join(problems) or None
        now = time.monotonic()
        if line is not None and (line != self._problem or now - self._told_at >= REPEAT_PROBLEM_S):
            self._told_at = now
            await self.on_problem(line)
        elif line is None and self._problem is not None:
            await self.on_problem("OTLP export works again")
        self._problem = line
        dropped = self.queue.dropped
        if dropped > self._told_dropped:
            await self.on_problem(
                f"{dropped - self._told_dropped} samples dropped from the OTLP export "
                f"({dropped} in all): the queue of {self.otlp.max_queue} was full or the "
                "endpoint could not take them"
            )
            self._told_dropped = dropped


class Telemetry:
    """The exporters of every cluster the service follows that asks for one."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._exports: dict[str, tuple[ClusterExport, asyncio.Task[None]]] = {}

    def start(self, cluster_id: str, config: ClusterConfig, live: LiveStats, start_ns: int) -> None:
        """Start exporting a cluster's telemetry, if it asks for it (and it is not started)."""
        otlp = config.telemetry.otlp if config.telemetry is not None else None
        if otlp is None or cluster_id in self._exports:
            return

        async def on_problem(line: str) -> None:
            log.info("cluster %s: telemetry: %s", cluster_id, line)
            await self.journal.event(cluster_id, EVENT_KIND, line)

        try:
            export = ClusterExport(cluster_id, config, otlp, live, start_ns, on_problem)
        except ImportError:  # admitted elsewhere, where the extra was installed
            log.warning("cluster %s: no OTLP export: %s", cluster_id, missing_extra())
            return
        self._exports[cluster_id] = (export, asyncio.create_task(export.run()))

    def add(self, cluster_id: str, cols: SampleColumns) -> None:
        """Queue a committed batch of a cluster for export (from any thread); never raises."""
        found = self._exports.get(cluster_id)
        if found is not None:
            found[0].add(cols)

    async def stop(self, cluster_id: str) -> None:
        """Stop a cluster's exports after the last one (its run has ended)."""
        found = self._exports.pop(cluster_id, None)
        if found is None:
            return
        export, task = found
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        try:
            await export.final()
        except Exception:  # a failed export is told as a problem; anything else is a bug
            log.exception("cluster %s: the last OTLP export failed", cluster_id)


__all__ = [
    "EVENT_KIND",
    "ClusterExport",
    "ExportFailed",
    "SampleQueue",
    "Telemetry",
    "export_headers",
    "missing_extra",
]
