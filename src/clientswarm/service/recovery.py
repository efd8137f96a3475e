"""What a restarted service rebuilds from its store to follow an unfinished cluster again.

The manager decides what to do with a recovered cluster (:meth:`ClusterManager._recover`);
this module reads the store: the cluster's state, whether its workers were ever launched, its
live statistics, and the stops asked for before the restart.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.sample import Sample
from clientswarm.service.prometheus import LiveRegistry
from clientswarm.service.state import ClusterState, submitted
from clientswarm.store import ClusterRecord, Store

REPLAY_BATCH = 5000
"""Stored samples fed to the live statistics at a time while replaying."""


def recovered_state(record: ClusterRecord, live: LiveRegistry) -> ClusterState:
    """The in-memory state of a stored cluster (its workers not yet read)."""
    config = ClusterConfig.model_validate_json(record.config_json)
    stats = live.get_or_create(record.id, config.name)
    state = ClusterState(record.id, config, record.token_hash, stats, status=record.status)
    state.start_ns = record.start_ns
    state.spawner_state = orjson.loads(record.spawner_state_json or "{}")
    return state


def launched(status: str, spawner_state: dict[str, Any]) -> bool:
    """Whether the cluster's workers had been handed to a spawner that started something to
    follow before the restart."""
    return status != "pending" and (status != "starting" or submitted(spawner_state))


def replay_stops(store: Store, state: ClusterState) -> None:
    """Stops asked for before a restart still reach the workers after it."""
    for client in store.list_clients(state.id, state="stopped"):
        state.workers[client.worker].stop_clients.add(client.id)
    stopping = [e for e in store.list_events(state.id) if e.kind == "stopping"]
    if stopping:
        state.stop_requested_at = time.monotonic()
        state.stop_reason = stopping[-1].message
        state.settled.set()
        for worker in state.workers:
            worker.stop_all = True


def replay_live(store: Store, cluster_id: str, live: LiveStats) -> None:
    """Rebuild the live statistics of a recovered cluster from its stored samples."""
    batch: list[Sample] = []
    for sample in store.iter_samples(cluster_id):
        batch.append(sample)
        if len(batch) >= REPLAY_BATCH:
            live.add(batch, batch[-1].end_ns / 1e9)
            batch = []
    if batch:
        live.add(batch, batch[-1].end_ns / 1e9)


__all__ = ["launched", "recovered_state", "replay_live", "replay_stops"]
