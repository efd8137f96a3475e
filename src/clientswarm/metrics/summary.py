"""The summary of a cluster: one model for ``summary.json`` and ``GET …/results`` alike.

A :class:`Summary` is built once, when the cluster is finalised (or for a partial answer while
it runs), from the exact statistics (:mod:`clientswarm.metrics.stats`) and the cluster's own
record (status, reason, times, workers). The service stores its JSON; ``GET …/results`` and
``clientswarm run``'s ``summary.json`` are that same document. Fields keep their order and
meaning (DESIGN.md's ``summary.json`` shape); what a later issue adds goes here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from clientswarm.metrics.dist import Dist


class Stats(BaseModel):
    """Exact statistics of a set of samples (a group, a step, a target, or all groups)."""

    model_config = ConfigDict(extra="forbid")

    requests: int
    succeeded: int
    failed: int
    errors: dict[str, int]
    duration_s: float
    request_rate: float
    output_token_rate: float
    input_tokens: int
    output_tokens: int
    goodput_rate: float
    ttft_s: Dist
    itl_s: Dist
    tpot_s: Dist
    e2e_s: Dist
    schedule_lag_s: Dist
    e2e_from_schedule_s: Dist
    goodput: int
    succeeded_rate: float
    send_rate: float | None
    error_rate: float
    token_sources: dict[str, int]
    warmup_excluded: int
    cancelled_excluded: int


class GroupStats(Stats):
    """A group's statistics, with the name of its target, its steps (only a group that has
    some) and how exact its prompts' token lengths are (only a group with prompts)."""

    target: str | None = None
    steps: dict[str, Stats] | None = None
    input_token_lengths: Literal["exact", "approximate"] | None = None

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("target", "steps", "input_token_lengths"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class ClusterInfo(BaseModel):
    """Which cluster, how it ended and when (epoch seconds)."""

    id: str | None = None
    name: str | None = None
    status: str | None = None
    reason: str | None = None
    """Why it failed or was cancelled (None when it completed)."""
    started_at: float | None = None
    ended_at: float | None = None


class WorkerRow(BaseModel):
    """One worker, as the summary shows it."""

    index: int
    state: str
    error: str | None = None
    samples: int = 0
    loop_lag_p99_s: float | None = None


class Summary(BaseModel):
    """``summary.json``: see the module docstring and :mod:`clientswarm.metrics.stats`."""

    cluster: ClusterInfo
    total: Stats
    groups: dict[str, GroupStats]
    targets: dict[str, Stats]
    """The Stats of each target's samples (interactions, like ``total``), by target name."""
    warnings: list[str]
    trustworthy: bool
    slo: dict[str, float] | None = None
    """The objectives goodput was measured against (None: none)."""
    lag_bound_s: float
    notes: list[str] = []
    workers: list[WorkerRow] = []

    def document(self) -> dict[str, Any]:
        """The JSON document (plain dicts and lists)."""
        return self.model_dump(mode="json")


__all__ = ["ClusterInfo", "GroupStats", "Stats", "Summary", "WorkerRow"]
