"""The read side of the service: what the routers and ``clientswarm run`` may know of clusters.

:class:`ClusterReads` answers from the store (records of every cluster, finished or not) and from
frozen snapshots of the clusters the service follows (:mod:`clientswarm.service.snapshot`); it
changes nothing. :class:`~clientswarm.service.manager.ClusterManager` is one, so the routers call
manager methods and never reach into the store or the manager's live objects.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from clientswarm.errors import ClientswarmError
from clientswarm.metrics.columns import SampleColumns
from clientswarm.service.prometheus import LiveRegistry, http_sd_targets, render_metrics
from clientswarm.service.samplesource import sample_columns
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.snapshot import ClusterSnapshot, ServiceHealth
from clientswarm.service.state import ClusterState, hash_token, token_matches
from clientswarm.service.timeseries import TimeSeriesCache
from clientswarm.service.views import progress_view
from clientswarm.store import ClientRecord, ClusterRecord, EventRecord, Store, WorkerRecord

_NO_CLUSTER_HASH = hash_token(secrets.token_urlsafe(32))
"""Compared with the token presented for a cluster that does not exist: no token matches it,
and the answer and the work are those of a wrong token for one that does."""


class NotFound(ClientswarmError):
    """No such cluster, client or group."""


@dataclass(frozen=True, slots=True)
class Progress:
    """One live-progress event of a cluster."""

    view: dict[str, Any]
    """What it says (:func:`~clientswarm.service.views.progress_view`)."""
    final: bool
    """Whether the cluster's results are final: the last event."""


class ClusterReads:
    """Answers about clusters from the store and the followed clusters' snapshots; every store
    call runs in a worker thread, so a slow read never stalls the event loop."""

    def __init__(self, store: Store, settings: ServiceSettings, live: LiveRegistry) -> None:
        self.store = store
        self.settings = settings
        self.live = live
        self.active: dict[str, ClusterState] = {}
        """The clusters being followed (not finished), by id."""
        self.timeseries_cache = TimeSeriesCache()
        """The time series of the last few finished clusters."""
        self.engine_latest: Callable[[str], dict[str, dict[str, Any]]] = lambda _: {}
        """Each scraped target's latest engine gauges of a cluster (the manager's engine
        metrics set it)."""

    # -- stored records -------------------------------------------------------------------------
    async def cluster(self, cluster_id: str) -> ClusterRecord:
        """The stored cluster; NotFound (404) when there is none."""
        record = await asyncio.to_thread(self.store.get_cluster, cluster_id)
        if record is None:
            raise NotFound(f"no cluster with id {cluster_id!r}")
        return record

    async def clusters(self, status: str | None = None) -> list[ClusterRecord]:
        """Every cluster (of ``status`` when given), newest first."""
        return await asyncio.to_thread(self.store.list_clusters, status)

    async def workers(self, cluster_id: str) -> list[WorkerRecord]:
        """The stored workers of a cluster, by index."""
        return await asyncio.to_thread(self.store.list_workers, cluster_id)

    async def clients(
        self, cluster_id: str, *, group: str | None = None, state: str | None = None
    ) -> list[ClientRecord]:
        """The clients of a cluster (of ``group`` and in ``state`` when given)."""
        return await asyncio.to_thread(
            self.store.list_clients, cluster_id, group=group, state=state
        )

    async def client(self, cluster_id: str, client_id: int) -> ClientRecord:
        """One client; NotFound when the cluster or the client is not there."""
        client = await asyncio.to_thread(self.store.get_client, cluster_id, client_id)
        if client is None:
            await self.cluster(cluster_id)  # says which is missing
            raise NotFound(f"cluster {cluster_id} has no client {client_id}")
        return client

    async def events(self, cluster_id: str, after_id: int = 0) -> list[EventRecord]:
        """A cluster's event log after ``after_id``; NotFound when there is no such cluster."""
        await self.cluster(cluster_id)
        return await asyncio.to_thread(self.store.list_events, cluster_id, after_id=after_id)

    def samples(self, cluster_id: str) -> Iterator[SampleColumns]:
        """Every stored sample of a cluster, a batch of columns at a time (a blocking
        iterator: stream it from a thread)."""
        return sample_columns(self.store, cluster_id, self.settings.samples_dir)

    async def timeseries(self, cluster_id: str) -> dict[str, Any]:
        """A cluster's per-group time series (:mod:`clientswarm.metrics.timeseries`) from its
        stored samples: final once it finished, as far as it got before; NotFound when there
        is no such cluster."""
        record = await self.cluster(cluster_id)
        final = bool(record.summary_json)
        return await asyncio.to_thread(
            self.timeseries_cache.get, self.store, record, final, self.settings.samples_dir
        )

    async def worker_token_matches(self, cluster_id: str, token: str) -> bool:
        """Whether ``token`` is the cluster's own; an unknown cluster takes the same work and
        answer as a wrong token, so that guessed ids are not confirmed."""
        state = self.active.get(cluster_id)
        if state is not None:
            token_hash = state.token_hash
        else:
            record = await asyncio.to_thread(self.store.get_cluster, cluster_id)
            token_hash = record.token_hash if record is not None else _NO_CLUSTER_HASH
        return token_matches(token, token_hash)

    # -- live ---------------------------------------------------------------------------------
    def snapshot(self, cluster_id: str, now_s: float | None = None) -> ClusterSnapshot | None:
        """A frozen view of a cluster the service follows; None once it has finished (or
        when it never was)."""
        state = self.active.get(cluster_id)
        return None if state is None else state.snapshot(time.time() if now_s is None else now_s)

    def is_following(self, cluster_id: str) -> bool:
        """Whether the cluster has yet to finish."""
        return cluster_id in self.active

    async def progress(self, cluster_id: str) -> Progress | None:
        """One live-progress event of a cluster; None once it is deleted."""
        record = await asyncio.to_thread(self.store.get_cluster, cluster_id)
        if record is None:
            return None
        now_s = time.time()
        snapshot = self.snapshot(cluster_id, now_s)
        live = self.live.get(cluster_id)
        stats = None if snapshot is None or live is None else live.snapshot(now_s)
        view = progress_view(record, snapshot, stats, now_s)
        latest = self.engine_latest(cluster_id)
        if latest:
            view["engine"] = latest  # each target's running, waiting and KV-cache usage
        return Progress(view, final=bool(record.summary_json))

    def live_stats(self, cluster_id: str) -> dict[str, Any]:
        """The live statistics of a cluster: the last 10 s and since the start."""
        live = self.live.get(cluster_id)
        if live is None:
            raise NotFound(f"no live statistics for cluster {cluster_id!r}")
        stats: dict[str, Any] = live.snapshot(time.time())
        return stats

    def metrics(self) -> bytes:
        """The Prometheus exposition of every cluster's live statistics."""
        return render_metrics(self.live)

    def scrape_targets(self) -> list[dict[str, Any]]:
        """This service as a Prometheus HTTP service-discovery target."""
        return http_sd_targets(self.settings.advertise_url)

    def health(self) -> ServiceHealth:
        """Clusters followed, and the store's health without the database's own message."""
        return ServiceHealth(len(self.active), self.store.health.view(detail=False))

    def store_health(self) -> dict[str, Any]:
        """The store's health with the database's own message (for the cluster view)."""
        view: dict[str, Any] = self.store.health.view()
        return view


__all__ = ["ClusterReads", "NotFound", "Progress"]
