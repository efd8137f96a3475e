"""JSON views of stored records for the frontend API."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from clientswarm.config.models import ClusterConfig
from clientswarm.config.redact import redact_config, redact_vary
from clientswarm.load.clients import first_client, group_of_client
from clientswarm.load.vary import describe_variant
from clientswarm.service.snapshot import ClusterSnapshot
from clientswarm.store import ClientRecord, ClusterRecord, WorkerRecord
from clientswarm.timestamps import rfc3339


def _elapsed_s(record: ClusterRecord, now: float) -> float | None:
    if record.started_at is None:
        return None
    return (record.finished_at or now) - record.started_at


def cluster_view(
    record: ClusterRecord,
    *,
    workers: list[WorkerRecord] | None = None,
    clients: list[ClientRecord] | None = None,
    brief: bool = False,
    store: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A cluster: status and timings; unless ``brief``, its workers, groups and config.
    Instants (``created_at``, ``started_at``, ``ended_at``, the workers' too) are RFC 3339
    UTC strings, as in the summary (:mod:`clientswarm.timestamps`).

    ``store``: whether the service's store works, shown as ``{"ok", "problem", "since"}``
    (``problem``: one line, the database's own message): while it fails, the counts stand
    still and the workers keep their batches until it works again.
    """
    import time

    view: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "reason": record.reason,
        "spawner": record.spawner_kind,
        "created_at": rfc3339(record.created_at),
        "started_at": rfc3339(record.started_at),
        "ended_at": rfc3339(record.finished_at),
        "elapsed_s": _elapsed_s(record, time.time()),
    }
    if store is not None:
        view["store"] = store
    if brief:
        return view
    config = orjson.loads(record.config_json)
    groups: dict[str, Counter[str]] = {g["name"]: Counter() for g in config["groups"]}
    for client in clients or []:
        groups.setdefault(client.group, Counter())[client.state] += 1
    view["workers"] = [worker_view(w) for w in workers or []]
    view["groups"] = [
        {
            "name": g["name"],
            "clients": g["clients"],
            "interaction": g["interaction"]["kind"],
            "load": g["load"]["kind"],
            "client_states": dict(groups[g["name"]]),
        }
        for g in config["groups"]
    ]
    view["spawner_state"] = orjson.loads(record.spawner_state_json or "{}")
    view["config"] = redact_config(config)  # header values may be credentials
    return view


def worker_view(worker: WorkerRecord) -> dict[str, Any]:
    """One worker's state."""
    return {
        "index": worker.index,
        "state": worker.state,
        "pid": worker.pid,
        "host": worker.host,
        "samples": worker.samples,
        "in_flight": worker.in_flight,
        "exit_code": worker.exit_code,
        "error": worker.error,
        "registered_at": rfc3339(worker.registered_at),
        "last_heartbeat_at": rfc3339(worker.last_heartbeat_at),
        "finished_at": rfc3339(worker.finished_at),
        "loop_lag_p99_s": worker.loop_lag_p99_s,
    }


def client_view(client: ClientRecord, config: ClusterConfig | None = None) -> dict[str, Any]:
    """One client's state and counts, and its own parameter values when its group varies."""
    view: dict[str, Any] = {
        "id": client.id,
        "group": client.group,
        "worker": client.worker,
        "state": client.state,
        "succeeded": client.succeeded,
        "failed": client.failed,
    }
    if config is not None:
        group_index = group_of_client(config, client.id)
        group = config.groups[group_index]
        if group.vary:
            index = client.id - first_client(config, group_index)
            view["vary"] = redact_vary(describe_variant(group, index, config.seed))
    return view


def progress_view(
    record: ClusterRecord,
    snapshot: ClusterSnapshot | None,
    live: dict[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """One live-progress event: status, elapsed time and, while the service follows the
    cluster (``snapshot``), its workers, requests in flight, the ``live`` statistics and
    whether its numbers are trustworthy right now."""
    view: dict[str, Any] = {
        "id": record.id,
        "status": record.status,
        "reason": record.reason,
        "elapsed_s": _elapsed_s(record, now),
    }
    if snapshot is not None:
        view["workers"] = snapshot.worker_counts()
        view["in_flight"] = snapshot.in_flight
        if live is not None:
            view["live"] = live
        view["warnings"] = snapshot.warnings()
        view["trustworthy"] = not view["warnings"]
    return view
