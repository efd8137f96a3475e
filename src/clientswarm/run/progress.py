"""The progress of a cluster the in-process service follows, for ``clientswarm run``'s display
(:mod:`clientswarm.reports.progress` draws it; ``submit --wait`` feeds the same display from the
service's progress stream).

rich loads when the display is first drawn, not with this module: ``clientswarm run`` imports
it on its start-up path, and the display is drawn only once the cluster is submitted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from clientswarm.reports.progress import FINISHING, ProgressLine, show_progress

if TYPE_CHECKING:
    from clientswarm.metrics.live import Recent
    from clientswarm.service.manager import ClusterManager
    from clientswarm.service.snapshot import ClusterSnapshot


def progress_line(
    snapshot: ClusterSnapshot | None,
    planned_s: float | None,
    recent: Recent | None = None,
    warmup_s: float = 0.0,
) -> ProgressLine:
    """The line of a cluster the in-process service follows (``None``: it no longer does,
    its results are being written), with the ``recent`` window's rates and TTFT p50."""
    if snapshot is None:
        return ProgressLine(FINISHING, 0.0, planned_s, 0, 0, 0, 0, 0, 0)
    warnings = snapshot.warnings()
    stopping = snapshot.stopping and not snapshot.status.final
    return ProgressLine(
        status="stopping" if stopping else snapshot.status.value,
        elapsed_s=snapshot.elapsed_s,
        planned_s=planned_s,
        succeeded=snapshot.succeeded,
        failed=snapshot.failed,
        in_flight=snapshot.in_flight,
        workers_running=sum(w.state.alive for w in snapshot.workers),
        workers_total=len(snapshot.workers),
        workers_failed=sum(w.state.broken for w in snapshot.workers),
        warning=warnings[0] if warnings else None,
        warmup_s=warmup_s,
        warmup_done=0 if recent is None else recent.warmup,
        request_rate=None if recent is None else recent.request_rate,
        output_token_rate=None if recent is None else recent.output_token_rate,
        ttft_p50_s=None if recent is None else recent.ttft_p50_s,
    )


def cluster_progress(
    manager: ClusterManager, cluster_id: str, planned_s: float | None, warmup_s: float
) -> ProgressLine:
    """The line of ``cluster_id`` now: its snapshot and its live statistics' recent window."""
    now_s = time.time()
    snapshot = manager.snapshot(cluster_id, now_s)
    live = manager.live.get(cluster_id)
    recent = None
    if snapshot is not None and snapshot.start_ns is not None and live is not None:
        recent = live.recent(now_s, snapshot.start_ns / 1e9)
    return progress_line(snapshot, planned_s, recent, warmup_s)


__all__ = ["ProgressLine", "cluster_progress", "progress_line", "show_progress"]
