"""What a finished run's summary means for its caller: the exit code and a one-line verdict.

``clientswarm run``, ``clientswarm submit --wait`` and ``clientswarm calibrate`` end with the
same exit codes, decided here from the summary document (the ``summary.json`` shape) alone:

====  =================================================================================
code  meaning
====  =================================================================================
0     the run completed and every threshold held (or it has none)
1     the run failed, was aborted or was cancelled
2     invalid input: the configuration, an option, a path (decided before any run)
3     the run completed but a threshold failed
====  =================================================================================

This module stays light: the CLI imports it before any command runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

EXIT_OK = 0
"""The run completed and every threshold held."""
EXIT_FAILED = 1
"""The run failed, was aborted or was cancelled (or the command failed)."""
EXIT_INVALID = 2
"""Invalid input: configuration, options, paths."""
EXIT_THRESHOLDS = 3
"""The run completed but at least one threshold failed."""


def _cluster(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    cluster = summary.get("cluster")
    return cluster if isinstance(cluster, Mapping) else {}


def failed_thresholds(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The summary's thresholds that did not hold: ``passed`` is not ``true`` (a threshold
    whose value could not be measured did not hold either)."""
    thresholds: Sequence[Any] = summary.get("thresholds") or []
    return [t for t in thresholds if isinstance(t, Mapping) and t.get("passed") is not True]


def exit_code(summary: Mapping[str, Any]) -> int:
    """The exit code of a run whose final summary is ``summary`` (see the module docstring):
    1 unless its status is ``completed``, then 3 if a threshold failed, else 0."""
    if _cluster(summary).get("status") != "completed":
        return EXIT_FAILED
    return EXIT_THRESHOLDS if failed_thresholds(summary) else EXIT_OK


def _threshold_text(threshold: Mapping[str, Any]) -> str:
    scope = threshold.get("scope") or "total"
    value = threshold.get("value")
    shown = "no value" if value is None else f"{value:.4g}" if isinstance(value, float) else value
    return f"{scope}: {threshold.get('expr')} ({shown})"


def verdict(summary: Mapping[str, Any]) -> str:
    """One line: ``completed``, ``failed: <reason>``, ``cancelled: <reason>`` or
    ``thresholds failed: <scope>: <expr> (<value>) · …``."""
    cluster = _cluster(summary)
    status = str(cluster.get("status") or "unknown")
    if status != "completed":
        reason = launch_failure(summary) or cluster.get("reason")
        return f"{status}: {reason}" if reason else status
    failed = failed_thresholds(summary)
    if failed:
        return "thresholds failed: " + " · ".join(_threshold_text(t) for t in failed)
    held = len(summary.get("thresholds") or [])
    return f"completed, {held} threshold{'s' if held != 1 else ''} held" if held else "completed"


def measured_nothing(summary: Mapping[str, Any]) -> bool:
    """Whether the run recorded no sample at all (measured, warm-up or cut off)."""
    total = summary.get("total")
    if not isinstance(total, Mapping):
        return True
    return not any(total.get(key) for key in ("requests", "warmup_excluded", "cancelled_excluded"))


def launch_failure(summary: Mapping[str, Any]) -> str | None:
    """Why a run failed before it measured anything (its workers could not start, its
    preflight failed): the cluster's reason and each worker's error, on one line; ``None``
    for a run that did not fail, or failed after it measured something (its report says
    more than the reason alone)."""
    cluster = _cluster(summary)
    if cluster.get("status") != "failed" or not measured_nothing(summary):
        return None
    parts = [str(cluster["reason"])] if cluster.get("reason") else []
    for worker in summary.get("workers") or []:
        error = worker.get("error") if isinstance(worker, Mapping) else None
        if error:
            line = f"worker {worker.get('index')} {worker.get('state')}: {error}"
            parts.append(" ".join(line.split()))  # one line, whatever the spawner said
    return "; ".join(parts) or "no worker started"


__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_THRESHOLDS",
    "exit_code",
    "failed_thresholds",
    "launch_failure",
    "measured_nothing",
    "verdict",
]
