"""A new cluster as the store keeps it: its record and the records of its clients."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from clientswarm.config.models import ClusterConfig
from clientswarm.load import clients_of_worker
from clientswarm.service.lifecycle import ClusterStatus
from clientswarm.service.state import hash_token
from clientswarm.store import ClientRecord, ClusterRecord


def new_cluster_rows(
    config: ClusterConfig, *, cluster_id: str, token: str, base_dir: Path
) -> tuple[ClusterRecord, list[ClientRecord]]:
    """The ``pending`` cluster (its token kept only as a hash) and every client placed on its
    worker, as the workers will derive them."""
    record = ClusterRecord(
        id=cluster_id,
        name=config.name,
        status=ClusterStatus.PENDING.value,
        reason=None,
        config_json=config.model_dump_json(),
        token_hash=hash_token(token),
        spawner_kind=config.spawner.kind,
        spawner_state_json=orjson.dumps({"base_dir": str(base_dir)}).decode(),
        created_at=time.time(),
        started_at=None,
        finished_at=None,
        start_ns=None,
        summary_json=None,
    )
    workers = config.spawner.workers
    clients = [
        ClientRecord(
            cluster_id=cluster_id,
            id=c.client_id,
            group=config.groups[c.group_index].name,
            worker=w,
            state="pending",
            succeeded=0,
            failed=0,
        )
        for w in range(workers)
        for c in clients_of_worker(config, w, workers)
    ]
    return record, clients


__all__ = ["new_cluster_rows"]
