"""Where a cluster's raw samples are: the one way every reader gets them.

A cluster of ``sample_path: service`` has its samples in the store (its workers posted them
batch by batch); one of ``sample_path: files`` has them in the Parquet files its workers wrote
under the service's samples directory (:mod:`clientswarm.reports.samplefiles`), and the store
holds only each tick's count. The summary, the time series, the samples download, the live
statistics a restarted service rebuilds and ``clientswarm run``'s samples file all read them
through :func:`sample_columns`, so both paths give the same results from the same samples.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.columns import SampleColumns
from clientswarm.store import Store

if TYPE_CHECKING:
    from clientswarm.reports.samplefiles import SampleFiles

CHUNK = 10_000
"""Samples per batch of columns, at most."""


def _config_of(store: Store, cluster_id: str) -> ClusterConfig | None:
    record = store.get_cluster(cluster_id)
    return None if record is None else ClusterConfig.model_validate_json(record.config_json)


def in_files(config: ClusterConfig) -> bool:
    """Whether the cluster's samples are in its workers' files."""
    return config.sample_path == "files"


def _files(samples_root: Path, cluster_id: str) -> SampleFiles:
    """The cluster's files: frozen for its summary once it ended, else as its workers write
    them (:func:`~clientswarm.reports.samplefiles.freeze`)."""
    from clientswarm.reports.samplefiles import SampleFiles, live_name  # pyarrow: only here

    frozen = samples_root / cluster_id
    return SampleFiles(samples_root, cluster_id if frozen.is_dir() else live_name(cluster_id))


def freeze_sample_files(samples_root: Path, cluster_id: str) -> None:
    """Freeze a ``sample_path: files`` cluster's files before its summary is read from them
    (blocking)."""
    from clientswarm.reports.samplefiles import freeze

    freeze(samples_root, cluster_id)


def sample_columns(
    store: Store,
    cluster_id: str,
    samples_root: Path,
    *,
    config: ClusterConfig | None = None,
    chunk: int = CHUNK,
) -> Iterator[SampleColumns]:
    """Every sample of a cluster, a batch of columns at a time (blocking: iterate in a
    thread). ``config``: the cluster's, when known (else read from the store)."""
    config = config if config is not None else _config_of(store, cluster_id)
    if config is not None and in_files(config):
        yield from _files(samples_root, cluster_id).iter_columns(chunk_rows=chunk)
    else:
        yield from store.iter_columns(cluster_id, chunk=chunk)


def sample_count(
    store: Store, cluster_id: str, samples_root: Path, *, config: ClusterConfig | None = None
) -> int:
    """How many samples :func:`sample_columns` gives (the files' footers are read, not their
    rows)."""
    config = config if config is not None else _config_of(store, cluster_id)
    if config is not None and in_files(config):
        return _files(samples_root, cluster_id).count_samples()
    return store.count_samples(cluster_id)


def delete_sample_files(samples_root: Path, cluster_id: str) -> None:
    """Remove a deleted cluster's sample files, if it had any (blocking)."""
    if not cluster_id or cluster_id in (".", "..") or "/" in cluster_id or "\0" in cluster_id:
        raise ValueError(f"cluster_id {cluster_id!r} is not one path component")
    shutil.rmtree(samples_root / cluster_id, ignore_errors=True)
    shutil.rmtree(samples_root / (cluster_id + ".live"), ignore_errors=True)


__all__ = [
    "CHUNK",
    "delete_sample_files",
    "freeze_sample_files",
    "in_files",
    "sample_columns",
    "sample_count",
]
