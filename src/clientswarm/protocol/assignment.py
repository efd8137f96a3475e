"""What a worker is told to do, and the messages it sends back.

A worker receives the whole cluster configuration, its index, the number of workers and the
shared start time; it derives its own clients and its slice of every group's arrival schedule
deterministically (see :mod:`clientswarm.load`), so the fleet's union is exactly the requested
load and nothing central sits on the hot path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import FileScope
from clientswarm.config.stages import GroupStages


class Assignment(BaseModel):
    """One worker's share of a cluster."""

    cluster_id: str
    worker: int = Field(ge=0)
    workers: int = Field(ge=1)
    start_ns: int = Field(description="Shared start time of the cluster, Unix epoch ns")
    config: ClusterConfig
    clients: list[int] = Field(
        default_factory=list,
        description="Cluster-wide ids of this worker's clients, as the service placed them",
    )
    base_dir: str = Field(default=".", description="Folder that relative dataset paths resolve in")
    path_roots: list[str] | None = Field(
        default=None,
        description="The only folders the config's paths may reach (the operator's "
        "--allow-path of a shared service); none: anywhere",
    )
    batch_interval_s: float = Field(default=0.5, gt=0, description="Max delay before samples ship")
    batch_max: int = Field(default=2000, ge=1, description="Max samples in one batch")
    engine_metrics: bool = Field(
        default=False,
        description="This worker scrapes the targets' engine metrics (target.metrics) and "
        "posts them (POST engine-metrics): worker 0 when the service cannot reach them",
    )
    sample_dir: str | None = Field(
        default=None,
        description="sample_path files: the folder (shared with the service) where this "
        "worker writes its samples, durably, before posting each tick's tallies (POST ticks); "
        "none: batches are posted (POST samples)",
    )
    stages: dict[str, GroupStages] = Field(
        default_factory=dict,
        description="The stages of each adaptive group (automatic sweep, capacity search) "
        "decided so far; heartbeat replies carry the later ones",
    )

    def file_scope(self) -> FileScope:
        """Where the config's paths resolve on this worker: the service's scope again, so a
        path that changed since the service checked it (a symlink swapped) is refused here."""
        if self.path_roots is None:
            return FileScope.anywhere(self.base_dir)
        return FileScope.confined(self.path_roots, base_dir=self.base_dir)


WorkerOutcome = Literal["completed", "failed", "cancelled"]


class WorkerReport(BaseModel):
    """How a worker's run went, sent with its last message."""

    outcome: WorkerOutcome
    error: str | None = None
    samples: int = 0
    loop_lag_p99_s: float = 0.0
    loop_lag_max_s: float = 0.0
    extra: dict[str, Any] = Field(default_factory=dict)
