r"""The internal API between the service and its workers (``/internal/v1``).

Workers pull, the service never pushes. Every call carries ``Authorization: Bearer <token>``,
the per-cluster token the spawner handed the worker (401 without it, 403 with a wrong one).
Paths, all under ``/internal/v1/clusters/{cluster_id}/workers/{index}``:

=========  ===========  =========================  ==========================================
method     path         body                       reply
=========  ===========  =========================  ==========================================
POST       /register    :class:`RegisterRequest`   :class:`RegisterReply`
GET        /assignment                             200 :class:`Assignment` once the shared start
                                                   time is set; 202 :class:`NotYet` before;
                                                   410 when the cluster was stopped meanwhile
POST       /samples     :class:`SampleBatch`       :class:`BatchAck` — only after the commit;
                                                   a ``seq`` seen before is acknowledged again
                                                   without being stored twice
POST       /preflight   :class:`PreflightReport`   ``{}`` — worker 0 only, when its
                                                   :class:`RegisterReply` carried a
                                                   :class:`PreflightPlan`, before it asks for
                                                   its assignment
POST       /heartbeat   :class:`Heartbeat`         :class:`Control`
POST       /engine-     :class:`EngineMetrics\     ``{}`` — worker 0 only, when its
           metrics      Report`                    :class:`Assignment` says
                                                   ``engine_metrics``
POST       /finish      :class:`WorkerReport`      ``{}``
=========  ===========  =========================  ==========================================

A worker that sends no heartbeat for ``RegisterReply.lost_after_s`` is marked lost; the cluster
carries on with the others. Workers send a sample batch in the packed form of
:mod:`clientswarm.metrics.wire` (a JSON line with one list per field of
:class:`clientswarm.metrics.sample.Sample`, then the inter-token latencies as float64); the
service also takes it as JSON rows, one object per sample (:class:`SampleBatch`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from clientswarm.config.stages import GroupStages
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.protocol.preflight import PreflightPlan, PreflightReport

INTERNAL_PREFIX = "/internal/v1"
TOKEN_ENV = "CLIENTSWARM_WORKER_TOKEN"
"""Environment variable through which a spawner hands a worker its cluster token."""

SERVICE_KEEP_ALIVE_S = 75.0
"""How long the service keeps an idle connection open (nginx's default). Longer than any
interval a worker is told to use (a batch interval is at most 10 s), so that a connection
carrying a worker's ticks or batches is not closed just as the next one goes out on it."""
WORKER_KEEP_ALIVE_S = 30.0
"""How long a worker keeps an idle connection to the service in its pool: well under
:data:`SERVICE_KEEP_ALIVE_S`, so the worker closes an idle connection first and never sends
on one the service is closing (which fails as a reset or a disconnect and is sent again)."""


def worker_path(cluster_id: str, index: int, action: str) -> str:
    """The path of one internal call, e.g. ``…/clusters/abc/workers/0/register``."""
    return f"{INTERNAL_PREFIX}/clusters/{cluster_id}/workers/{index}/{action}"


class RegisterRequest(BaseModel):
    """A worker announcing itself."""

    host: str
    pid: int
    version: str


class RegisterReply(BaseModel):
    """How the worker should behave towards the service."""

    heartbeat_interval_s: float = Field(gt=0)
    lost_after_s: float = Field(gt=0)
    preflight: PreflightPlan | None = Field(
        default=None,
        description="The targets this worker checks and reports (POST preflight) before it "
        "asks for its assignment; worker 0 of a cluster whose workers run off the service's "
        "machine (see clientswarm.protocol.preflight)",
    )


class NotYet(BaseModel):
    """The assignment is not ready (other workers are still starting)."""

    retry_after_s: float = Field(gt=0)
    reason: str


class SampleBatch(BaseModel):
    """One batch of samples as rows (one object with the fields of ``Sample`` each),
    idempotent by ``(worker, seq)``. Workers send the packed form of
    :mod:`clientswarm.metrics.wire` instead."""

    seq: int = Field(ge=1)
    samples: list[dict[str, Any]]


class BatchAck(BaseModel):
    """The batch is committed (``duplicate``: it had been before)."""

    seq: int
    duplicate: bool = False


class Heartbeat(BaseModel):
    """A worker's live state."""

    in_flight: int = 0
    recorded: int = 0
    active_clients: int = 0
    loop_lag_p99_s: float = 0.0
    in_flight_groups: dict[str, int] = Field(
        default_factory=dict, description="Requests in flight of each adaptive group"
    )


class EngineScrape(BaseModel):
    """One scrape of a target's engine metrics (its replicas merged), as worker 0 sends it:
    the values as :func:`clientswarm.service.engine_metrics.values_to_json` writes them."""

    target: str = Field(max_length=64)
    t_s: float = Field(description="Seconds from the cluster's shared start")
    values: dict[str, Any]


class EngineProblem(BaseModel):
    """A scrape of a target that failed (or works again), in one line."""

    target: str = Field(max_length=64)
    message: str = Field(max_length=1000)


class EngineMetricsReport(BaseModel):
    """What worker 0 scraped since its last report (``POST engine-metrics``)."""

    scrapes: list[EngineScrape] = Field(default_factory=list, max_length=10_000)
    problems: list[EngineProblem] = Field(default_factory=list, max_length=1000)


class Control(BaseModel):
    """What the service wants from the worker now."""

    stop_all: bool = False
    stop_clients: list[int] = Field(default_factory=list)
    stages: dict[str, GroupStages] = Field(
        default_factory=dict,
        description="Every adaptive group's stages decided so far (the whole list each time: "
        "workers ignore what they know)",
    )


__all__ = [
    "INTERNAL_PREFIX",
    "TOKEN_ENV",
    "Assignment",
    "BatchAck",
    "Control",
    "EngineMetricsReport",
    "EngineProblem",
    "EngineScrape",
    "Heartbeat",
    "NotYet",
    "PreflightPlan",
    "PreflightReport",
    "RegisterReply",
    "RegisterRequest",
    "SampleBatch",
    "WorkerReport",
    "worker_path",
]
