"""What the Job and its pods say about each worker, as pure functions of the API's JSON.

A worker has ended when its pod has (``Succeeded``/``Failed``), when its pod can never start
(``ImagePullBackOff``, ``CreateContainerConfigError``, …), or when the Job ended or went away
without it. Each end carries the reason a user needs: ``OOMKilled`` with the hint to raise the
memory limit, the eviction message, the Job's ``DeadlineExceeded``, the container's exit code.

:class:`KubernetesHandle` names the Job those pods belong to, as the spawner's handle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clientswarm.protocol.spawning import SpawnerHandle

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
"""Label (Kubernetes >= 1.28) and annotation (all versions) holding a pod's completion index."""

NEVER_STARTS = frozenset(
    {
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
"""Waiting reasons of a container that will not start without someone changing something.
``ErrImagePull`` is not among them: the kubelet retries it once, then says ``ImagePullBackOff``."""

JOB_STOPPED_PODS = frozenset(
    {"DeadlineExceeded", "BackoffLimitExceeded", "MaxFailedIndexesExceeded"}
)
"""Job failure reasons for which the job controller itself terminates the remaining pods."""


class KubernetesHandle(SpawnerHandle):
    """One cluster's Indexed Job: its name, namespace and uid (its pods name it as their
    owner), and how many workers it runs."""

    job: str
    namespace: str
    job_uid: str | None = None
    workers: int

    @property
    def following(self) -> bool:
        """Whether a Job was created."""
        return bool(self.job)


@dataclass(frozen=True)
class PodEnd:
    """How one worker's pod ended (or why it never will start)."""

    index: int
    exit_code: int | None
    reason: str
    pod: str | None = None
    started: bool = False
    """Whether its container ran (so it has a log worth reading)."""
    cancelled: bool = False
    """True when it was deleted rather than failed: its Job was deleted or stopped."""


def pod_index(pod: Mapping[str, Any]) -> int | None:
    """The completion index of a pod of an Indexed Job, from its label or annotation."""
    metadata = pod.get("metadata") or {}
    for part in ("labels", "annotations"):
        value = (metadata.get(part) or {}).get(INDEX_KEY)
        if value is not None and str(value).isdigit():
            return int(value)
    return None


def job_failure(job: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(reason, message)`` of the Job's ``Failed`` condition, if it has failed."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return str(condition.get("reason") or "Failed"), str(condition.get("message") or "")
    return None


def job_finished(job: Mapping[str, Any] | None) -> bool:
    """Whether the Job has its ``Complete`` or ``Failed`` condition."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return True
    return False


def _container_state(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return (statuses[0].get("state") or {}) if statuses else {}


def _job_note(job: Mapping[str, Any] | None) -> str:
    failure = job_failure(job)
    if failure is None or failure[0] not in JOB_STOPPED_PODS:
        return ""
    reason, message = failure
    return f" (the Job failed: {reason}: {message})" if message else f" (the Job failed: {reason})"


def _failed(index: int, pod: Mapping[str, Any], job: Mapping[str, Any] | None) -> PodEnd:
    name = str((pod.get("metadata") or {}).get("name") or "?")
    status = pod.get("status") or {}
    terminated = _container_state(pod).get("terminated") or {}
    exit_code = terminated.get("exitCode")
    code = int(exit_code) if isinstance(exit_code, int) else None
    deleted = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    if status.get("reason") == "Evicted":
        message = str(status.get("message") or "").strip()
        return PodEnd(index, code, f"pod {name} was evicted: {message}".rstrip(": "), name)
    if terminated.get("reason") == "OOMKilled":
        reason = (
            f"pod {name} was OOMKilled (exit code {code}): the worker needs more memory than its "
            "limit (spawner.resources.limits.memory)"
        )
        return PodEnd(index, code, reason, name, started=True)
    if status.get("reason") == "DeadlineExceeded":
        reason = f"pod {name} passed its deadline: {status.get('message') or 'DeadlineExceeded'}"
        return PodEnd(index, code, reason, name, started=bool(terminated))
    detail = f"exit code {code}" if code is not None else "no exit code"
    if terminated.get("reason") and terminated.get("reason") != "Error":
        detail += f", {terminated['reason']}"
    if terminated.get("message"):
        detail += f": {str(terminated['message']).strip()}"
    note = _job_note(job)
    return PodEnd(
        index,
        code,
        f"pod {name} failed ({detail}){note}",
        name,
        started=bool(terminated),
        cancelled=deleted and not note,
    )


def _never_starts(index: int, pod: Mapping[str, Any]) -> PodEnd | None:
    waiting = _container_state(pod).get("waiting") or {}
    reason = waiting.get("reason")
    if reason not in NEVER_STARTS:
        return None
    name = str((pod.get("metadata") or {}).get("name") or "?")
    message = str(waiting.get("message") or "").strip()
    text = f"pod {name} cannot start: {reason}" + (f": {message}" if message else "")
    return PodEnd(index, None, text, name)


def _phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def ended_workers(
    job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]], workers: int
) -> dict[int, PodEnd]:
    """The workers (by index) that have ended or never will start. Pure.

    ``job`` is ``None`` when the Job no longer exists: every worker without a finished pod
    then counts as cancelled (someone deleted the Job, or its TTL removed it).
    """
    by_index: dict[int, list[Mapping[str, Any]]] = {}
    for pod in pods:
        index = pod_index(pod)
        if index is not None and 0 <= index < workers:
            by_index.setdefault(index, []).append(pod)
    ended: dict[int, PodEnd] = {}
    failure = job_failure(job)
    for index in range(workers):
        history = sorted(by_index.get(index, []), key=_created)
        succeeded = [p for p in history if (p.get("status") or {}).get("phase") == "Succeeded"]
        if succeeded:
            name = str((succeeded[0].get("metadata") or {}).get("name") or "?")
            ended[index] = PodEnd(index, 0, f"pod {name} completed", name, started=True)
            continue
        latest = history[-1] if history else None
        if latest is not None and _phase(latest) == "Failed":
            ended[index] = _failed(index, latest, job)
            continue
        if latest is not None:
            stuck = _never_starts(index, latest)
            if stuck is not None:
                ended[index] = stuck
                continue
        if job is None:
            ended[index] = PodEnd(index, None, "its Job was deleted", cancelled=True)
        elif failure is not None and (latest is None or _phase(latest) == "Pending"):
            # The job controller removes what is left; a running pod still gets to finish.
            reason, message = failure
            text = f"the Job failed: {reason}" + (f": {message}" if message else "")
            ended[index] = PodEnd(index, None, text)
    return ended
