"""Repeat series on the service: one configuration run N times, one cluster after another.

The service's side of ``clientswarm run --repeat N`` (:mod:`clientswarm.run.repeats`). Run ``i``
(from 0) is an ordinary cluster of the configuration with the seed ``seed + i`` (the same seed
each time with ``same_seed``); the service creates run ``i + 1`` once run ``i`` has ended,
whatever its outcome (as ``run --repeat`` goes on after a failed run). Once the last has ended
the series holds the aggregate in the shape of ``DIR/summary.json`` of ``run --repeat``:
``{"name", "repeats": {"count", "confidence", "same_seed", "seeds", "runs", "exit_codes",
"total", "groups"}}`` (:func:`clientswarm.metrics.repeats.aggregate`), ``runs`` being the
clusters' ids.

A series is ``pending`` → ``running`` (its first cluster exists) → ``completed`` (every run
ended) | ``cancelled`` (stopped: the running cluster is stopped, no further run is made, and
the aggregate covers the runs that ended before the stop) | ``failed`` (a run could not be
made, or a cluster of it was deleted before the end; the reason says which).

Admission: each run is admitted when its cluster is created, like any cluster (the first when
the series is posted: a 422 or 429 then, and nothing is stored): the operator's limits hold
for every cluster of the series. The per-cluster limits (workers, clients, planned
requests: what one cluster holds in memory at once) are not summed over the series, since its
clusters never run at the same time; at ``--max-active-clusters`` the next run waits until a
cluster of the service has ended.

Durable: the series is a row of the store (:mod:`clientswarm.store.series`). A restarted
service goes on with each unfinished series: it waits for the current cluster (recovered by the
manager like any other) to end, then makes the next run. A crash between creating a run's
cluster and storing its id leaves that cluster outside the series (it runs to its end alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError
from clientswarm.metrics.repeats import aggregate
from clientswarm.reports.repeats import REPEATS_KEY
from clientswarm.service.lifecycle import ClusterStatus
from clientswarm.service.manager import Busy, ClusterManager, Conflict, NotFound
from clientswarm.store import ClusterRecord, StoreUnavailable
from clientswarm.store.series import SeriesRecord
from clientswarm.verdict import exit_code

log = logging.getLogger("clientswarm.service")

BUSY_RETRY_S = 1.0
"""How often a series waiting at the active-cluster limit tries again (besides every change)."""


class SeriesStatus(StrEnum):
    """Where a repeat series is in its life (the statuses of its clusters, without starting)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True once the series has ended: its aggregate is final."""
        return self not in (SeriesStatus.PENDING, SeriesStatus.RUNNING)


@dataclass(frozen=True)
class RepeatRequest:
    """How often to run a configuration, with which seeds, and the intervals' confidence."""

    count: int
    same_seed: bool = False
    confidence: float = 0.95


def seeds_of(seed: int, count: int, *, same_seed: bool) -> list[int]:
    """The seed of each run: ``seed + i``, or ``seed`` each time (as ``run --repeat``)."""
    return [seed if same_seed else seed + i for i in range(count)]


def planned_seeds(record: SeriesRecord) -> list[int]:
    """The seeds of every run of ``record``, planned or made."""
    seed = ClusterConfig.model_validate_json(record.config_json).seed
    return seeds_of(seed, record.count, same_seed=record.same_seed)


class SeriesRunner:
    """Makes the runs of every unfinished series, one cluster after another, through the
    manager's public methods; one background task per series."""

    def __init__(self, manager: ClusterManager) -> None:
        self.manager = manager
        self.store = manager.store
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        """Per series: held from a check for a stop to the stored id of the run it makes."""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Go on with every unfinished series (after the manager recovered its clusters)."""
        for record in await asyncio.to_thread(self.store.series.unfinished):
            self._follow(record.id)

    async def close(self) -> None:
        """Stop making runs (a restarted service goes on)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _follow(self, series_id: str) -> None:
        task = asyncio.create_task(self._drive(series_id), name=f"series {series_id}")
        self._tasks[series_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(series_id, None))

    # -- the API's side ----------------------------------------------------------------------
    async def create(self, config: ClusterConfig, request: RepeatRequest) -> SeriesRecord:
        """Make the first run (admitting ``config`` as any cluster) and store the series
        (``running``); ConfigError (422) or Busy (429) as creating a cluster, and then nothing
        is stored."""
        seed = seeds_of(config.seed, request.count, same_seed=request.same_seed)[0]
        first = await self.manager.create(config.model_copy(update={"seed": seed}))
        record = SeriesRecord(
            id=uuid.uuid4().hex[:12],
            name=config.name,
            status=SeriesStatus.RUNNING.value,
            config_json=config.model_dump_json(),
            count=request.count,
            same_seed=request.same_seed,
            confidence=request.confidence,
            cluster_ids=(first.id,),
        )
        try:
            await asyncio.to_thread(self.store.series.create, record)
        except Exception:
            with contextlib.suppress(Exception):  # no series: its run must not go on alone
                await self.manager.stop_cluster(first.id, "its repeat series was not stored")
            raise
        self._follow(record.id)
        return record

    async def series(self, series_id: str) -> SeriesRecord:
        """The stored series; NotFound (404) when there is none."""
        record = await asyncio.to_thread(self.store.series.get, series_id)
        if record is None:
            raise NotFound(f"no repeat series with id {series_id!r}")
        return record

    async def all_series(self) -> list[SeriesRecord]:
        """Every series, newest first."""
        return await asyncio.to_thread(self.store.series.all)

    async def runs(self, record: SeriesRecord) -> list[ClusterRecord | None]:
        """The clusters of ``record`` so far, in run order (None: deleted)."""
        return [await asyncio.to_thread(self.store.get_cluster, c) for c in record.cluster_ids]

    async def stop(self, series_id: str) -> None:
        """Make no further run and stop the running one; Conflict (409) once it has ended."""
        async with self._lock(series_id):
            record = await self.series(series_id)
            if SeriesStatus(record.status).final:
                raise Conflict(f"repeat series {series_id} has already ended ({record.status})")
            if record.stop_requested_at is None:
                await asyncio.to_thread(
                    self.store.series.update, series_id, stop_requested_at=time.time()
                )
            if record.cluster_ids:
                with contextlib.suppress(Conflict, NotFound):  # it ended meanwhile
                    await self.manager.stop_cluster(
                        record.cluster_ids[-1], f"its repeat series {series_id} was stopped"
                    )
        await self.manager.journal.notify()  # a series waiting at the limit hears it

    def _lock(self, series_id: str) -> asyncio.Lock:
        return self._locks.setdefault(series_id, asyncio.Lock())

    # -- driving a series --------------------------------------------------------------------
    async def _drive(self, series_id: str) -> None:
        try:
            while True:
                try:
                    if not await self._step(series_id):
                        return
                except StoreUnavailable:  # the store said so itself; try again a bit later
                    await asyncio.sleep(BUSY_RETRY_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: say so once rather than retry forever
            log.exception("repeat series %s: making its runs failed", series_id)
            with contextlib.suppress(Exception):
                record = await self.series(series_id)
                await self._end(record, SeriesStatus.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self._locks.pop(series_id, None)

    async def _step(self, series_id: str) -> bool:
        """Wait for the current run to end, then end the series or make its next run; False
        once the series has ended."""
        record = await self.series(series_id)
        if SeriesStatus(record.status).final:
            return False
        if record.cluster_ids:
            current = record.cluster_ids[-1]
            if record.stop_requested_at is not None:  # the service restarted before it stopped
                with contextlib.suppress(Conflict, NotFound):
                    await self.manager.stop_cluster(
                        current, f"its repeat series {series_id} was stopped"
                    )
            if not await self._wait_ended(current):
                index = len(record.cluster_ids) - 1
                await self._end(record, SeriesStatus.FAILED, f"run {index} ({current}) was deleted")
                return False
        async with self._lock(series_id):
            record = await self.series(series_id)
            if record.stop_requested_at is not None:
                await self._end(record, SeriesStatus.CANCELLED, "stopped by the user")
                return False
            if len(record.cluster_ids) >= record.count:
                await self._end(record, SeriesStatus.COMPLETED, None)
                return False
            made = await self._next_run(record)
        if made is None:  # at the active-cluster limit: wait outside the lock, a stop may come
            await self._pause()
        return made is not False

    async def _wait_ended(self, cluster_id: str) -> bool:
        """Wait until the cluster has ended; False when there is no such cluster."""
        while True:
            stored = await asyncio.to_thread(self.store.get_cluster, cluster_id)
            if stored is None:
                return False
            if ClusterStatus(stored.status).final:
                return True
            if cluster_id in self.manager.active:
                await self.manager.wait_finished(cluster_id)
            else:  # stored as unfinished but not followed (yet): look again soon
                await asyncio.sleep(BUSY_RETRY_S)

    async def _next_run(self, record: SeriesRecord) -> bool | None:
        """Make run ``len(cluster_ids)``: True when made, None at the active-cluster limit
        (try again later), False when refused (the series has ended ``failed``)."""
        index = len(record.cluster_ids)
        seed = planned_seeds(record)[index]
        config = ClusterConfig.model_validate_json(record.config_json)
        try:
            cluster = await self.manager.create(config.model_copy(update={"seed": seed}))
        except Busy:
            return None
        except ConfigError as exc:
            reason = f"run {index} was refused: {'; '.join(exc.problems)}"
            await self._end(record, SeriesStatus.FAILED, reason)
            return False
        ids = (*record.cluster_ids, cluster.id)
        await asyncio.to_thread(
            self.store.series.update, record.id, cluster_ids=ids, status=SeriesStatus.RUNNING.value
        )
        return True

    async def _pause(self) -> None:
        """Until a change of some cluster (one may have ended), or :data:`BUSY_RETRY_S`."""
        changed = self.manager.changed
        with contextlib.suppress(TimeoutError):
            async with changed:
                await asyncio.wait_for(changed.wait(), BUSY_RETRY_S)

    async def _end(self, record: SeriesRecord, status: SeriesStatus, reason: str | None) -> None:
        """Store the series' final status and its aggregate (see the module docstring)."""
        summary: dict[str, Any] | None = None
        try:
            summaries, ids = await self._summaries(record, status)
        except NotFound as exc:  # a run's cluster was deleted before the end
            status, reason, summaries, ids = SeriesStatus.FAILED, str(exc), [], []
        if summaries:
            summary = {"name": record.name, REPEATS_KEY: self._aggregate(record, summaries, ids)}
            if status is SeriesStatus.COMPLETED and reason is None:
                reason = _unfinished_runs(summaries)
        await asyncio.to_thread(
            self.store.series.update,
            record.id,
            status=status.value,
            reason=reason,
            finished_at=time.time(),
            summary_json=None if summary is None else orjson.dumps(summary).decode(),
        )
        log.info("repeat series %s: %s%s", record.id, status, f" ({reason})" if reason else "")

    async def _summaries(
        self, record: SeriesRecord, status: SeriesStatus
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The final summaries of the runs that count (a stop leaves out the run it cancelled)
        and their cluster ids."""
        ids = list(record.cluster_ids)
        if status is SeriesStatus.CANCELLED and ids:
            last = await asyncio.to_thread(self.store.get_cluster, ids[-1])
            if last is None or last.status == ClusterStatus.CANCELLED:
                ids.pop()
        summaries = [await self.manager.results(cluster_id) for cluster_id in ids]
        return summaries, ids

    def _aggregate(
        self, record: SeriesRecord, summaries: list[dict[str, Any]], ids: list[str]
    ) -> dict[str, Any]:
        return {
            "count": len(summaries),
            "confidence": record.confidence,
            "same_seed": record.same_seed,
            "seeds": planned_seeds(record)[: len(summaries)],
            "runs": ids,
            "exit_codes": [exit_code(s) for s in summaries],
            **aggregate(summaries, record.confidence),
        }


def _unfinished_runs(summaries: list[dict[str, Any]]) -> str | None:
    """A reason naming the runs that did not complete, or None."""
    others = [
        f"run {i} {s['cluster']['status']}"
        for i, s in enumerate(summaries)
        if s["cluster"]["status"] != ClusterStatus.COMPLETED
    ]
    return None if not others else "every run ended; not completed: " + ", ".join(others)


def series_view(
    record: SeriesRecord, runs: list[ClusterRecord | None] | None = None
) -> dict[str, Any]:
    """A series for the API: its request and status; with ``runs``, each run's cluster and
    seed, and the aggregate (``summary``, the ``summary.json`` of ``run --repeat``, once it
    has ended)."""
    from clientswarm.timestamps import rfc3339

    status = SeriesStatus(record.status)
    view: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "reason": record.reason,
        "count": record.count,
        "same_seed": record.same_seed,
        "confidence": record.confidence,
        "clusters": list(record.cluster_ids),
        "current": record.cluster_ids[-1] if record.cluster_ids and not status.final else None,
        "stop_requested": record.stop_requested_at is not None,
        "created_at": rfc3339(record.created_at),
        "ended_at": rfc3339(record.finished_at),
    }
    if runs is None:
        return view
    seeds = planned_seeds(record)
    view["seeds"] = seeds
    view["runs"] = [
        {
            "index": i,
            "cluster": cluster_id,
            "seed": seeds[i],
            "status": None if run is None else run.status,
        }
        for i, (cluster_id, run) in enumerate(zip(record.cluster_ids, runs, strict=True))
    ]
    view["summary"] = None if record.summary_json is None else orjson.loads(record.summary_json)
    return view


__all__ = [
    "RepeatRequest",
    "SeriesRunner",
    "SeriesStatus",
    "planned_seeds",
    "seeds_of",
    "series_view",
]
