"""What a restarted service rebuilds from its store to follow an unfinished cluster again.

The manager decides what to do with a recovered cluster (:meth:`ClusterManager._recover`);
this module reads the store: the cluster's state and its spawner's stored handle, whether its
workers were ever launched, its live statistics, and the stops asked for before the restart.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.derive import measured_parts
from clientswarm.service.journal import Journal
from clientswarm.service.lifecycle import ClusterStatus, WorkerState
from clientswarm.service.prometheus import LiveRegistry
from clientswarm.service.samplesource import sample_columns
from clientswarm.service.state import BASE_DIR_KEY, ClusterState, WorkerLive, live_of
from clientswarm.store import ClusterRecord, Store, WorkerRecord

REPLAY_BATCH = 5000
"""Stored samples fed to the live statistics at a time while replaying."""


def recovered_state(
    record: ClusterRecord, workers: list[WorkerRecord], live: LiveRegistry, journal: Journal
) -> tuple[ClusterState, dict[str, Any]]:
    """The in-memory state of a stored cluster with its stored ``workers`` (its spawner's
    handle not restored), and the handle's stored JSON form (empty when nothing was
    submitted)."""
    config = ClusterConfig.model_validate_json(record.config_json)
    stats = live_of(live, record.id, config, record.status)
    state = ClusterState(
        record.id,
        config,
        record.token_hash,
        stats,
        journal,
        initial_status=ClusterStatus(record.status),
        start_ns=record.start_ns,
        workers=[WorkerLive(WorkerState(w.state)) for w in workers],
    )
    stored: dict[str, Any] = orjson.loads(record.spawner_state_json or "{}")
    state.base_dir = str(stored.pop(BASE_DIR_KEY, "."))
    return state, stored


def launched(state: ClusterState) -> bool:
    """Whether the cluster's workers had been handed to a spawner that started something to
    follow before the restart."""
    return state.status is not ClusterStatus.PENDING and (
        state.status is not ClusterStatus.STARTING or state.followed() is not None
    )


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


def replay_live(store: Store, state: ClusterState, samples_root: Path) -> None:
    """Rebuild the live and the exact statistics of a recovered cluster from its samples, as
    if each chunk had just been committed. (On the high-rate path they come from its files,
    which may hold a tick not yet counted when the service stopped: the live statistics count
    it again when its worker sends it again; the final summary reads the files, once each.)"""
    chunks = sample_columns(store, state.id, samples_root, config=state.config, chunk=REPLAY_BATCH)
    for batch in chunks:
        parts = measured_parts(batch, slo=state.config.slo)
        state.live.add_parts(parts, batch.columns["end_ns"][-1] / 1e9)
        state.statistics.add_parts(parts, len(batch))
        if state.adaptive is not None:
            state.adaptive.observe(batch, parts)


__all__ = ["launched", "recovered_state", "replay_live", "replay_stops"]
