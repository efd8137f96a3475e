"""The ``kubernetes`` spawner: the workers of a cluster are the pods of one Indexed Job.

``submit`` creates the cluster's token Secret, then the Job, then makes the Job the Secret's
owner (so deleting the Job removes the Secret too), through ``lightkube`` with the in-cluster
configuration or the kubeconfig (``$KUBECONFIG``, else ``~/.kube/config``). ``poll`` lists the
Job and its pods by the label ``clientswarm.io/cluster=<id>`` at most every
``query_interval_s`` — which is also how a restarted service finds them again — and reports
every worker whose pod ended or never will start, with the pod's reason and its log's tail.
``stop`` deletes the Job with foreground propagation: the kubelet sends each worker SIGTERM (a
graceful stop: in-flight requests are recorded as cancelled and everything is shipped), and the
Job goes once its pods have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig
from lightkube.models.meta_v1 import OwnerReference
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod, Secret
from lightkube.types import CascadeType, PatchType

from clientswarm.config.spawners import KubernetesSpawnerConfig
from clientswarm.errors import SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch, WorkerExit, options_of
from clientswarm.spawners.kubernetes.render import (
    CLUSTER_LABEL,
    CONTAINER_NAME,
    job_name,
    owner_reference,
    render_objects,
    render_submission,
    secret_name,
)
from clientswarm.spawners.kubernetes.states import KubernetesHandle, PodEnd, ended_workers

log = logging.getLogger(__name__)

STOP_POLL_S = 0.5
LOG_TAIL_LINES = 20
RBAC_HINT = (
    "the service's account needs the Role in deploy/kubernetes/role.yaml "
    "(secrets, jobs.batch, pods and pods/log in the cluster's namespace)"
)
T = TypeVar("T")


def api_problem(exc: BaseException, action: str) -> SpawnerError:
    """A :class:`SpawnerError` saying what Kubernetes refused, why, and what to do about it."""
    if isinstance(exc, ApiError):
        status = exc.status
        text = f"Kubernetes refused to {action}: {status.code} {status.reason}: {status.message}"
        if status.code == 403:
            text += f"; {RBAC_HINT}"
        elif status.code == 401:
            text += "; the credentials of the kubeconfig or service account were rejected"
        return SpawnerError(text)
    if isinstance(exc, ConfigError):
        return SpawnerError(
            f"cannot {action}: no Kubernetes configuration ({exc}); run the service in a pod "
            "with a service account, or point $KUBECONFIG at a kubeconfig"
        )
    return SpawnerError(f"cannot {action}: the Kubernetes API did not answer ({exc})")


API_FAILURES: tuple[type[BaseException], ...] = (ApiError, ConfigError, httpx2.HTTPError, OSError)
"""What a call to the Kubernetes API can raise that is the API's (or the network's) fault."""


@dataclass
class _JobView:
    """What this service instance last learnt about one cluster's Job."""

    queried_at: float = float("-inf")
    ended: dict[int, WorkerExit] = field(default_factory=dict)
    last_problem: str = ""


class KubernetesSpawner:
    """Runs the workers of a cluster as the pods of one Indexed Job."""

    kind = "kubernetes"

    def __init__(
        self,
        *,
        kubeconfig: Callable[[], KubeConfig] = KubeConfig.from_env,
        query_interval_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kubeconfig = kubeconfig
        self.query_interval_s = query_interval_s
        self._monotonic = monotonic
        self._views: dict[str, _JobView] = {}

    def render(self, launch: ClusterLaunch) -> str:
        """The Secret and the Job, as YAML (the token redacted). Pure."""
        return render_submission(launch, options_of(launch, KubernetesSpawnerConfig))

    @contextlib.asynccontextmanager
    async def _client(self, namespace: str | None) -> AsyncIterator[AsyncClient]:
        config = self._kubeconfig()  # read each time: a rotated token or kubeconfig is picked up
        client = AsyncClient(config=config, namespace=namespace, field_manager="clientswarm")
        try:
            yield client
        finally:
            await client.close()

    async def _call(self, action: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except API_FAILURES as exc:
            raise api_problem(exc, action) from exc

    async def submit(self, launch: ClusterLaunch) -> KubernetesHandle:
        """Create the token Secret, the Job, then hand the Secret to the Job."""
        config = options_of(launch, KubernetesSpawnerConfig)
        if launch.sample_dir is not None and config.samples_claim is None:
            raise SpawnerError(
                f"cluster {launch.cluster_id}: sample_path: files on kubernetes needs "
                "spawner.samples_claim (a ReadWriteMany PersistentVolumeClaim mounted at "
                f"{launch.sample_dir} in the service's pod); without it the samples would stay "
                "in the pods"
            )
        secret_doc, job_doc = render_objects(launch, config)
        secret, job = secret_name(launch.cluster_id), job_name(launch.cluster_id)
        namespace = config.namespace or "the current namespace"
        where = f"in {namespace}"
        try:
            async with self._client(config.namespace) as client:
                namespace = client.namespace  # what an unset ``namespace`` resolved to
                where = f"in namespace {namespace}"
                await self._call(
                    f"create the Secret {secret} {where}",
                    client.create(cast(Secret, Secret.from_dict(secret_doc))),
                )
                try:
                    created = await self._call(
                        f"create the Job {job} {where}",
                        client.create(cast(Job, Job.from_dict(job_doc))),
                    )
                except SpawnerError:
                    with contextlib.suppress(*API_FAILURES):
                        await client.delete(Secret, secret, namespace=namespace)
                    raise
                uid = created.metadata.uid if created.metadata is not None else None
                if uid:
                    owner = owner_reference({"metadata": {"name": job, "uid": uid}})
                    patch = {"metadata": {"ownerReferences": [owner]}}
                    await self._call(
                        f"make the Job {job} the owner of the Secret {secret} {where}",
                        client.patch(
                            Secret, secret, patch, namespace=namespace, patch_type=PatchType.MERGE
                        ),
                    )
        except ConfigError as exc:
            raise api_problem(exc, f"create the Job {job} {where}") from exc
        return KubernetesHandle(job=job, namespace=namespace, job_uid=uid, workers=launch.workers)

    def restore(self, stored: Mapping[str, Any]) -> KubernetesHandle:
        """The handle of a restarted service, from its JSON form."""
        return KubernetesHandle.from_json(stored)

    async def _observe(
        self, client: AsyncClient, cluster_id: str, handle: KubernetesHandle
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The cluster's Job (``None`` when gone) and its pods, found by the cluster label."""
        namespace, name = handle.namespace, handle.job
        labels: dict[str, Any] = {CLUSTER_LABEL: cluster_id}
        jobs = [j async for j in client.list(Job, namespace=namespace, labels=labels)]
        pods = [p async for p in client.list(Pod, namespace=namespace, labels=labels)]
        job = next((j.to_dict() for j in jobs if j.metadata and j.metadata.name == name), None)
        uid = (job or {}).get("metadata", {}).get("uid") or handle.job_uid
        owned = []
        for pod in pods:
            refs: list[OwnerReference] = (
                (pod.metadata.ownerReferences or []) if pod.metadata else []
            )
            if not uid or any(ref.uid == uid for ref in refs):
                owned.append(pod.to_dict())
        return job, owned

    async def _log_tail(self, client: AsyncClient, namespace: str, end: PodEnd) -> str:
        if end.pod is None or not end.started or end.exit_code == 0:
            return ""
        lines: list[str] = []
        with contextlib.suppress(*API_FAILURES):
            logs = client.log(
                end.pod, namespace=namespace, container=CONTAINER_NAME, tail_lines=LOG_TAIL_LINES
            )
            async for line in logs:
                lines.append(line)
        return "".join(lines)

    async def poll(self, cluster_id: str, handle: KubernetesHandle) -> list[WorkerExit]:
        """Workers whose pod ended (or never will start): reason, exit code, log tail.

        A failing API is logged (once per distinct problem) and asked again later; the
        heartbeats say meanwhile whether the workers are alive.
        """
        if not handle.job:
            return []
        workers = handle.workers
        view = self._views.setdefault(cluster_id, _JobView())
        now = self._monotonic()
        if len(view.ended) < workers and now - view.queried_at >= self.query_interval_s:
            view.queried_at = now
            namespace = handle.namespace
            try:
                async with self._client(namespace) as client:
                    job, pods = await self._observe(client, cluster_id, handle)
                    for index, end in ended_workers(job, pods, workers).items():
                        if index not in view.ended:
                            tail = await self._log_tail(client, namespace, end)
                            view.ended[index] = WorkerExit(
                                index, end.exit_code, end.reason, tail, cancelled=end.cancelled
                            )
                view.last_problem = ""
            except API_FAILURES as exc:
                problem = str(api_problem(exc, f"follow the Job of cluster {cluster_id}"))
                if problem != view.last_problem:
                    log.warning("%s", problem)
                    view.last_problem = problem
        return [view.ended[index] for index in sorted(view.ended)]

    async def stop(self, cluster_id: str, handle: KubernetesHandle, grace_s: float) -> None:
        """Delete the Job in the foreground, then wait up to ``grace_s`` for it to be gone.

        The kubelet sends every worker SIGTERM, and SIGKILL after the pod's
        ``terminationGracePeriodSeconds``; the owned Secret goes with the Job.
        """
        if not handle.job:
            return
        namespace, name = handle.namespace, handle.job
        action = f"delete the Job {name} in namespace {namespace}"
        try:
            async with self._client(namespace) as client:
                try:
                    await client.delete(
                        Job, name, namespace=namespace, cascade=CascadeType.FOREGROUND
                    )
                except ApiError as exc:
                    if exc.status.code != 404:
                        raise
                deadline = self._monotonic() + grace_s
                while self._monotonic() < deadline:
                    try:
                        await client.get(Job, name, namespace=namespace)
                    except ApiError as exc:
                        if exc.status.code == 404:
                            break
                        raise
                    await asyncio.sleep(STOP_POLL_S)
        except API_FAILURES as exc:
            raise api_problem(exc, action) from exc
        finally:
            self._views.pop(cluster_id, None)  # the next poll asks the API at once

    async def release(self, cluster_id: str, handle: KubernetesHandle) -> None:
        """The cluster is over: delete its Job if pods are left that never started.

        A pod stuck on its image or config would otherwise wait forever; a finished Job is
        left for ``kubectl`` (and ``ttl_seconds_after_finished``).
        """
        self._views.pop(cluster_id, None)
        if not handle.job:
            return
        namespace, name = handle.namespace, handle.job
        try:
            async with self._client(namespace) as client:
                job, pods = await self._observe(client, cluster_id, handle)
                stuck = [p for p in pods if (p.get("status") or {}).get("phase") == "Pending"]
                if job is not None and stuck:
                    await client.delete(
                        Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND
                    )
        except API_FAILURES as exc:
            raise api_problem(exc, f"delete the Job {name} in namespace {namespace}") from exc
