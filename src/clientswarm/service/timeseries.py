"""A cluster's time series from its store (:mod:`clientswarm.metrics.timeseries`).

Computed on demand, streaming the stored samples a batch of columns at a time
(``Store.iter_columns``), rather than kept up to date as batches are committed: it costs the
batch path nothing, holds no memory for a running cluster, works the same for a cluster
recovered after a restart or finished long ago, and is asked for rarely (a chart, a report, the
end of ``clientswarm run``). A finished cluster's document does not change, so the last few are
kept (:class:`TimeSeriesCache`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.timeseries import BUCKET_S, timeseries_of
from clientswarm.service.engine_metrics import server_series
from clientswarm.service.samplesource import sample_columns
from clientswarm.store import ClusterRecord, Store

log = logging.getLogger(__name__)


def cluster_timeseries(
    store: Store, record: ClusterRecord, samples_root: Path | None = None
) -> dict[str, Any]:
    """The time series document of ``record`` as its samples stand (every group of its
    configuration, in order; none before its shared start time is set). ``samples_root``: the
    service's samples directory (:mod:`clientswarm.service.samplesource`)."""
    config = ClusterConfig.model_validate_json(record.config_json)
    order = [g.name for g in config.groups]
    if record.start_ns is None:  # not started: no bucket has begun
        groups: dict[str, Any] = {}
        return {
            "bucket_s": BUCKET_S,
            "start": None,
            "start_ns": None,
            "warmup_s": config.warmup_s,
            "groups": groups,
        }
    document = timeseries_of(
        sample_columns(store, record.id, samples_root or Path(), config=config),
        record.start_ns,
        warmup_s=config.warmup_s,
        group_order=order,
    )
    rows = store.list_engine_scrapes(record.id)
    if rows:
        try:
            document["server"] = server_series(rows)
        except Exception:  # the engine's series must never cost the clients'
            log.exception("cluster %s: the engine metrics' series failed", record.id)
    return document


class TimeSeriesCache:
    """The documents of the last few finished clusters (theirs no longer change)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._documents: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(
        self, store: Store, record: ClusterRecord, final: bool, samples_root: Path | None = None
    ) -> dict[str, Any]:
        """``record``'s document: from the cache when ``final`` and there, else computed (and
        kept when ``final``)."""
        if final and (found := self._documents.get(record.id)) is not None:
            self._documents.move_to_end(record.id)
            return found
        document = cluster_timeseries(store, record, samples_root)
        if final:
            self._documents[record.id] = document
            while len(self._documents) > self.size:
                self._documents.popitem(last=False)
        return document


__all__ = ["TimeSeriesCache", "cluster_timeseries"]
