"""A cluster's results from its store: its one summary, and what to say about its workers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.interactions.prompts import token_length_note, token_lengths_of
from clientswarm.load.stage_plan import stage_plans
from clientswarm.metrics.stats import DEFAULT_LAG_BOUND_S, ClusterStatistics
from clientswarm.metrics.summary import ClusterInfo, Summary, WorkerRow
from clientswarm.service.adaptive import EVENT_KIND as ADAPTIVE_EVENT
from clientswarm.service.adaptive import AdaptiveRun
from clientswarm.service.engine_metrics import server_block
from clientswarm.service.lifecycle import WorkerState
from clientswarm.service.runinfo import run_info
from clientswarm.service.samplesource import in_files, sample_columns
from clientswarm.service.verdicts import threshold_results
from clientswarm.store import ClusterRecord, Store, WorkerRecord

log = logging.getLogger(__name__)

LOOP_LAG_BOUND_S = 0.010
"""A worker whose event loop lags more (p99) adds that much to what it measures: the benchmark
showed 21 ms of loop lag inflating TTFT p50 by 45 % (bench/RESULTS.md, 256 clients)."""


def cluster_summary(
    store: Store,
    record: ClusterRecord,
    warnings: list[str],
    *,
    fed: ClusterStatistics | None = None,
    samples: bool = True,
    samples_root: Path | None = None,
) -> Summary:
    """The summary of ``record`` as it stands (its status, reason and times), exact from
    every stored sample; without ``samples``, of none (a cluster whose samples the statistics
    cannot take).

    ``samples_root``: the service's samples directory, where the workers of a ``sample_path:
    files`` cluster wrote its samples (:mod:`clientswarm.service.samplesource`); the summary
    of such a cluster is read from its files.

    ``fed``: the statistics the service fed every batch it committed; used when they hold as
    many samples as the store, else (a batch stored but not fed, rows written by another
    hand) the samples are streamed from the store, a batch of columns at a time.

    Every target of the configuration has an entry in ``targets`` (in its order), every group
    names its target, with or without samples.

    ``warnings`` make the run untrustworthy. Each group with prompts says whether its prompts'
    token lengths are ``exact`` (a tokenizer was configured) or ``approximate`` (words), also
    as a line of ``notes``. Each group with load stages gets one StageStats per stage
    (``stages``, :func:`~clientswarm.load.stage_plan.stage_plans`). The store keeps each
    sample's ``step`` flag, so the steps of user-defined interactions land in their group's
    ``steps`` entry, and the group and total Stats count interactions. ``workers`` are the
    cluster's workers as they are now.
    ``thresholds``: the configuration's, judged on these statistics
    (:func:`~clientswarm.service.verdicts.threshold_results`).
    """
    config = ClusterConfig.model_validate_json(record.config_json)
    cluster = ClusterInfo(
        id=record.id,
        name=record.name,
        status=record.status,
        reason=record.reason,
        started_at=record.started_at,
        ended_at=record.finished_at,
    )
    targets = list(config.target_map())
    replica_urls = {
        name: t.replica_urls for name, t in config.target_map().items() if t.urls is not None
    }
    plans = {g.name: stage_plans(g, config.warmup_s) for g in config.groups}
    adaptive = AdaptiveRun.of(config)
    if adaptive is not None:
        restore_adaptive(store, record.id, adaptive)
        plans.update(adaptive.plans())
    files = in_files(config)
    if files and samples_root is None:
        raise ValueError(f"cluster {record.id} keeps its samples in files: give samples_root")
    if samples and not files and fed is not None and fed.samples == store.count_samples(record.id):
        summary = fed.summary(
            cluster,
            extra_warnings=warnings,
            target_order=targets,
            stage_plans=plans,
            replica_urls=replica_urls,
        )
    else:
        order = [g.name for g in config.groups]
        with ClusterStatistics(slo=config.slo, group_order=order) as streamed:
            root = samples_root or Path()
            for columns in sample_columns(store, record.id, root, config=config) if samples else ():
                streamed.add(columns)
            summary = streamed.summary(
                cluster,
                extra_warnings=warnings,
                target_order=targets,
                stage_plans=plans,
                replica_urls=replica_urls,
            )
    for name, (sweep, capacity) in (adaptive.results() if adaptive is not None else {}).items():
        if name in summary.groups:
            summary.groups[name].sweep, summary.groups[name].capacity = sweep, capacity
    for group in config.groups:
        stats_of_group = summary.groups.get(group.name)
        if stats_of_group is not None and stats_of_group.target is None:  # no samples yet
            stats_of_group.target = config.target_name_of(group)
        lengths = token_lengths_of(group.interaction)
        if lengths is not None and stats_of_group is not None:
            stats_of_group.input_token_lengths = lengths
            summary.notes.append(f"{group.name}: {token_length_note(group.interaction)}")
    summary.notes.extend(preflight_notes(store, record.id))
    rows = store.list_engine_scrapes(record.id)
    if rows:
        clients = {name: stats.model_dump() for name, stats in summary.targets.items()}
        try:
            summary.server = server_block(config, rows, plans, clients)
        except Exception as exc:  # the engine's numbers must never cost the clients' results
            log.exception("cluster %s: summarising the engine metrics failed", record.id)
            summary.notes.append(
                f"engine metrics: could not be summarised ({type(exc).__name__}: {exc}); the "
                "scrapes are kept in the time series"
            )
    workers = store.list_workers(record.id)
    summary.workers = [_worker_row(w) for w in workers]
    summary.run = run_info(config, record, workers)
    summary.thresholds = threshold_results(config, summary)
    return summary


def restore_adaptive(store: Store, cluster_id: str, adaptive: AdaptiveRun) -> None:
    """Take up the decisions of a cluster's adaptive groups from its events
    (:mod:`clientswarm.service.adaptive`)."""
    after, decisions = 0, list[dict[str, Any]]()
    while True:
        events = store.list_events(cluster_id, after_id=after, limit=1000)
        decisions.extend(e.data for e in events if e.kind == ADAPTIVE_EVENT and e.data)
        if len(events) < 1000:
            break
        after = events[-1].id
    adaptive.restore(decisions)


def preflight_notes(store: Store, cluster_id: str) -> list[str]:
    """The warnings of a cluster's preflight (:mod:`clientswarm.service.preflight`), as notes
    of its summary: they do not make its numbers untrustworthy (a key unset for a target
    that asks for none changes nothing)."""
    return [
        f"preflight: {event.message}"
        for event in store.list_events(cluster_id, limit=200)
        if event.kind == "preflight_warning"
    ]


def worker_rows(store: Store, cluster_id: str) -> list[WorkerRow]:
    """One line per worker for the summary."""
    return [_worker_row(w) for w in store.list_workers(cluster_id)]


def _worker_row(w: WorkerRecord) -> WorkerRow:
    return WorkerRow(
        index=w.index,
        state=w.state,
        error=w.error,
        samples=w.samples,
        loop_lag_p99_s=w.loop_lag_p99_s,
    )


def live_warnings(
    lags_s: list[float],
    schedule_lag_p99_s: dict[str, float | None],
    lag_bound_s: float = DEFAULT_LAG_BOUND_S,
) -> list[str]:
    """Why the numbers of a running cluster are not trustworthy right now (empty: they are).

    ``lags_s`` are the workers' recent event-loop lags (p99, from their heartbeats) and
    ``schedule_lag_p99_s`` each group's schedule lag p99 over the last 10 s: a lagging loop
    delays the timestamps it takes, a late schedule means the load asked for is not the load
    sent.
    """
    lines = [
        f"worker {index}: event-loop lag p99 {lag_s * 1e3:.0f} ms > "
        f"{LOOP_LAG_BOUND_S * 1e3:.0f} ms: add workers or give it fewer clients"
        for index, lag_s in enumerate(lags_s)
        if lag_s > LOOP_LAG_BOUND_S
    ]
    for name, lag in schedule_lag_p99_s.items():
        if lag is not None and lag > lag_bound_s:
            lines.append(
                f"group {name}: schedule lag p99 {lag * 1e3:.0f} ms > {lag_bound_s * 1e3:.0f} ms "
                "in the last 10 s: the workers cannot keep up; add workers"
            )
    return lines


def worker_warnings(store: Store, cluster_id: str) -> list[str]:
    """Workers that failed, were lost, or whose event loop lagged: their timings mislead."""
    lines = []
    for w in store.list_workers(cluster_id):
        if WorkerState(w.state).broken:
            lines.append(f"worker {w.index} {w.state}: {w.error or 'no reason given'}")
        elif (lag_s := w.loop_lag_p99_s or 0.0) > LOOP_LAG_BOUND_S:
            lines.append(
                f"worker {w.index}: event-loop lag p99 {lag_s * 1e3:.0f} ms > "
                f"{LOOP_LAG_BOUND_S * 1e3:.0f} ms; its timings include client-side delay: "
                "use more workers or fewer clients per worker"
            )
    return lines


def finish_clients(store: Store, cluster_id: str) -> None:
    """At the end: running clients finished, clients that never ran say so."""
    running = [c.id for c in store.list_clients(cluster_id, state="running")]
    store.set_client_state(cluster_id, running, "finished")
    pending = [c.id for c in store.list_clients(cluster_id, state="pending")]
    store.set_client_state(cluster_id, pending, "never_started")
