"""The ``run`` section of a summary: versions, hosts, targets, the configuration's identity and
planned vs measured duration (:class:`~clientswarm.metrics.summary.RunInfo`)."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from clientswarm import __version__
from clientswarm.config.models import ClusterConfig
from clientswarm.load import group_end_s
from clientswarm.metrics.summary import RunInfo, TargetInfo
from clientswarm.store import ClusterRecord, WorkerRecord


def config_sha256(config_json: str | bytes) -> str:
    """SHA-256 (hex) of a configuration's canonical JSON: sorted keys, no spaces, UTF-8, as
    Python's ``json.dumps(…, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    writes it, so the same configuration gives the same digest however its JSON was
    indented, and anyone can recompute it from config.json."""
    canonical = json.dumps(
        json.loads(config_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def public_url(url: str) -> str:
    """``url`` without what may carry a credential: its user info and its query string."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def planned_duration_s(config: ClusterConfig) -> float | None:
    """Seconds the cluster runs by its schedule, warm-up included; None when a request count
    alone bounds a group."""
    ends = [group_end_s(group, config.warmup_s) for group in config.groups]
    return None if any(end is None for end in ends) else max(e for e in ends if e is not None)


def run_info(
    config: ClusterConfig, record: ClusterRecord, workers: Iterable[WorkerRecord]
) -> RunInfo:
    """The metadata of ``record``'s run, its workers as they are now."""
    measured = None
    if record.started_at is not None and record.finished_at is not None:
        measured = max(0.0, record.finished_at - record.started_at)
    return RunInfo(
        clientswarm_version=__version__,
        python_version=platform.python_version(),
        hosts=sorted({w.host for w in workers if w.host}),
        targets={
            name: TargetInfo(url=public_url(target.url), model=target.model)
            for name, target in config.target_map().items()
        },
        config_sha256=config_sha256(record.config_json),
        seed=config.seed,
        planned_duration_s=planned_duration_s(config),
        measured_duration_s=measured,
    )


__all__ = ["config_sha256", "planned_duration_s", "public_url", "run_info"]
