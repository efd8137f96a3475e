"""What the Kubernetes spawner creates, rendered purely: a Secret and one Indexed Job.

One Indexed Job per cluster (``completionMode: Indexed``, completions = parallelism = workers);
pod ``i`` runs ``python -m clientswarm.worker --service URL --cluster ID`` and the worker takes
its index from ``$JOB_COMPLETION_INDEX``, which Kubernetes sets in every pod of an Indexed Job.

The cluster token is never in the Job: it is the ``token`` of the Secret
``clientswarm-<id>-token`` and reaches the pods as ``CLIENTSWARM_WORKER_TOKEN`` through a
``secretKeyRef``. Creation order is the order of :func:`render_objects`: the Secret first (so
no pod ever starts without it), then the Job; the spawner then makes the Job the Secret's owner
(:func:`owner_reference`), so deleting the Job garbage-collects the Secret.

Every object carries :func:`cluster_labels`, so a restarted service finds them again with the
selector :func:`cluster_selector`.

A ``sample_path: files`` cluster (the launch's ``sample_dir`` set) has its workers write their
samples under the service's samples directory, which a pod does not share: the pod template
mounts the PersistentVolumeClaim ``samples_claim`` (the one the service's pod mounts there) at
that same path (:func:`samples_volume`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from clientswarm.config.spawners import KubernetesSpawnerConfig
from clientswarm.protocol.internal import TOKEN_ENV
from clientswarm.protocol.spawning import ClusterLaunch

REDACTED = "<redacted>"
APP_NAME = "clientswarm"
COMPONENT = "worker"
CLUSTER_LABEL = "clientswarm.io/cluster"
CONTAINER_NAME = "worker"
SAMPLES_VOLUME = "samples"
"""The pod volume of the samples' PersistentVolumeClaim (``sample_path: files``)."""
TOKEN_KEY = "token"
"""The key of the cluster token in the Secret's data."""


def job_name(cluster_id: str) -> str:
    """Name of the cluster's Job: ``clientswarm-<id>``."""
    return f"clientswarm-{cluster_id}"


def secret_name(cluster_id: str) -> str:
    """Name of the Secret holding the cluster token: ``clientswarm-<id>-token``."""
    return f"clientswarm-{cluster_id}-token"


def cluster_labels(cluster_id: str) -> dict[str, str]:
    """The labels clientswarm puts on every object and pod of a cluster."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/component": COMPONENT,
        CLUSTER_LABEL: cluster_id,
    }


def cluster_selector(cluster_id: str) -> str:
    """The label selector of a cluster's Job, pods and Secret (``clientswarm.io/cluster=<id>``)."""
    return f"{CLUSTER_LABEL}={cluster_id}"


def service_url_of(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> str:
    """How the pods reach the service: ``advertise_url``, else the service's own URL."""
    return config.advertise_url or launch.service_url


def _labels(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> dict[str, str]:
    return {**config.labels, **cluster_labels(launch.cluster_id)}


def _metadata(name: str, launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if config.namespace:  # unset: the namespace of the client (kubectl's or the spawner's)
        metadata["namespace"] = config.namespace
    metadata["labels"] = _labels(launch, config)
    if config.annotations:
        metadata["annotations"] = dict(config.annotations)
    return metadata


def render_secret(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> dict[str, Any]:
    """The Secret holding the cluster token (in clear; see :func:`render_yaml` to redact)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(secret_name(launch.cluster_id), launch, config),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: launch.token},
    }


def worker_command(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> list[str]:
    """The container's command; the index comes from ``$JOB_COMPLETION_INDEX``."""
    return [
        config.python,
        "-m",
        "clientswarm.worker",
        "--service",
        service_url_of(launch, config),
        "--cluster",
        launch.cluster_id,
    ]


def worker_env(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> list[dict[str, Any]]:
    """The container's env: the token from the cluster's Secret, then the ``env`` option."""
    token_ref = {"name": secret_name(launch.cluster_id), "key": TOKEN_KEY}
    env: list[dict[str, Any]] = [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": token_ref}}]
    for var in config.env:
        if var.value_from_secret is not None:
            ref = {"name": var.value_from_secret.name, "key": var.value_from_secret.key}
            env.append({"name": var.name, "valueFrom": {"secretKeyRef": ref}})
        else:
            env.append({"name": var.name, "value": var.value})
    return env


def samples_volume(
    launch: ClusterLaunch, config: KubernetesSpawnerConfig
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The pod's volume of ``samples_claim`` and the worker's mount of it at the service's
    samples directory, for a ``sample_path: files`` launch with a claim; else None."""
    if launch.sample_dir is None or config.samples_claim is None:
        return None
    volume = {"name": SAMPLES_VOLUME, "persistentVolumeClaim": {"claimName": config.samples_claim}}
    return volume, {"name": SAMPLES_VOLUME, "mountPath": launch.sample_dir}


def _container(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image,
        "command": worker_command(launch, config),
        "env": worker_env(launch, config),
    }
    if config.resources is not None:
        resources = {
            part: dict(quantities)
            for part, quantities in (
                ("requests", config.resources.requests),
                ("limits", config.resources.limits),
            )
            if quantities
        }
        if resources:
            container["resources"] = resources
    samples = samples_volume(launch, config)
    if samples is not None:
        container["volumeMounts"] = [samples[1]]
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return container


def _pod_spec(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never"}
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    if config.node_selector:
        spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        spec["tolerations"] = [toleration.manifest() for toleration in config.tolerations]
    if config.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in config.image_pull_secrets]
    spec["securityContext"] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spec["containers"] = [_container(launch, config)]
    samples = samples_volume(launch, config)
    if samples is not None:
        spec["volumes"] = [samples[0]]
    return spec


def render_job(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> dict[str, Any]:
    """The cluster's Indexed Job: one pod per worker, the token only by reference.

    ``backoffLimitPerIndex: 0`` (Kubernetes >= 1.29): a failed pod fails its own index only,
    and the other workers carry on, as with every spawner; nothing is retried, since a worker
    cannot rejoin a cluster that has started.
    """
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": launch.workers,
        "parallelism": launch.workers,
        "backoffLimitPerIndex": 0,
    }
    if config.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished
    if config.active_deadline_s is not None:
        spec["activeDeadlineSeconds"] = config.active_deadline_s
    template_metadata: dict[str, Any] = {"labels": _labels(launch, config)}
    if config.annotations:
        template_metadata["annotations"] = dict(config.annotations)
    spec["template"] = {"metadata": template_metadata, "spec": _pod_spec(launch, config)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(job_name(launch.cluster_id), launch, config),
        "spec": spec,
    }


def render_objects(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> list[dict[str, Any]]:
    """The objects of one cluster in creation order: the token Secret, then the Job. Pure."""
    return [render_secret(launch, config), render_job(launch, config)]


def owner_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """An ``ownerReferences`` entry making the created ``job`` (with its ``uid``) an owner."""
    metadata = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": metadata["name"],
        "uid": metadata["uid"],
        "blockOwnerDeletion": True,
    }


def redact_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with every value of a Secret's ``data``/``stringData`` redacted."""
    shown = copy.deepcopy(dict(obj))
    if shown.get("kind") == "Secret":
        for part in ("data", "stringData"):
            if isinstance(shown.get(part), dict):
                shown[part] = {key: REDACTED for key in shown[part]}
    return shown


def render_yaml(objects: Iterable[Mapping[str, Any]], *, redact: bool = True) -> str:
    """Multi-document YAML of ``objects`` (for ``kubectl apply -f``), Secrets redacted."""
    shown = [redact_object(obj) if redact else dict(obj) for obj in objects]
    return yaml.safe_dump_all(shown, sort_keys=False, default_flow_style=False, width=100)


def render_submission(launch: ClusterLaunch, config: KubernetesSpawnerConfig) -> str:
    """What the spawner creates, for review: a comment header, then the redacted YAML."""
    where = f"namespace {config.namespace}" if config.namespace else "the current namespace"
    head = [
        f"# clientswarm cluster {launch.cluster_id}: {launch.workers} worker(s) as one "
        f"Indexed Job in {where}, one pod per worker",
        "# created in this order; the Job then becomes the Secret's owner",
        "# the token is redacted: put it in the Secret before 'kubectl apply -f' by hand",
    ]
    return "\n".join(head) + "\n" + render_yaml(render_objects(launch, config))
