"""The kubernetes spawner end to end, against the FAKE Kubernetes API server of the tests.

No Kubernetes API server can run on this machine, so the service (a real process) talks through
lightkube, over HTTP, to :class:`fake_kubernetes_api.FakeKubernetesApi`: a stateful stand-in
for the Secrets, Jobs, Pods and pod-log calls the spawner makes, whose "pods" are real
``clientswarm worker`` processes driving the real simulator. What only a real cluster does
(scheduling, images, the kubelet) is out of reach here and said so in the README.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fake_kubernetes_api import FakeKubernetesApi
from service_process import CLI, ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

IMAGE = "registry.example/clientswarm:test"
SAMPLES_CLAIM = "clientswarm-samples"
ROLE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "role.yaml"


def granted_by_role() -> set[tuple[str, str]]:
    """``(verb, resource)`` pairs the service's Role in deploy/kubernetes grants."""
    role = yaml.safe_load(ROLE.read_text())
    return {
        (verb, resource)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def rbac_of(method: str, path: str) -> tuple[str, str]:
    """The RBAC verb and resource of one API request (namespaced paths only)."""
    parts = path.strip("/").split("/")
    rest = parts[parts.index("namespaces") + 2 :]  # resource[/name[/subresource]]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    verbs = {"POST": "create", "PATCH": "patch", "DELETE": "delete"}
    verb = verbs.get(method) or ("get" if len(rest) > 1 else "list")
    return verb, resource


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with simulator("--ttft-ms", "5", "--itl-ms", "1") as url:
        yield url


def cluster(
    target: str, *, workers: int = 2, duration_s: float = 3, preset: str = "main", **spawner: Any
) -> dict[str, Any]:
    return {
        "name": "on-kubernetes",
        "target": {"url": target, "model": "mock-model", "timeout_s": 10},
        # The image comes from the operator's preset: a shared service takes no posted one.
        "spawner": {"kind": "kubernetes", "preset": preset, "workers": workers, **spawner},
        "groups": [
            {
                "name": "hello",
                "clients": 4,
                "interaction": {"kind": "hello"},
                "load": {"kind": "open", "rate": 20, "arrival": "constant"},
                "stop": {"duration_s": duration_s},
            }
        ],
    }


def start_service(tmp_path: Path, kube: FakeKubernetesApi, port: int = 0) -> ServiceProcess:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="loadtest")
    presets = []
    for name, text in [
        ("main", f"image: {IMAGE}\n"),
        ("unpullable", "image: fake.invalid/clientswarm:nope\n"),
        ("shared-samples", f"image: {IMAGE}\nsamples_claim: {SAMPLES_CLAIM}\n"),
    ]:
        preset = tmp_path / f"{name}.yaml"
        preset.write_text(f"kind: kubernetes\n{text}")
        presets += ["--spawner-preset", f"{name}={preset}"]
    return ServiceProcess(
        tmp_path / "svc",
        port=port,
        extra=("--lost-after-s", "5", *presets),
        env={"KUBECONFIG": str(kubeconfig)},
    ).start()


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKubernetesApi]:
    with FakeKubernetesApi(tmp_path / "kube", pull_backoff_after_s=0.2) as api:
        yield api


@pytest.fixture
def service(tmp_path: Path, kube: FakeKubernetesApi) -> Iterator[ServiceProcess]:
    svc = start_service(tmp_path, kube)
    try:
        yield svc
    finally:
        svc.stop()


def submit(service: ServiceProcess, config: dict[str, Any]) -> str:
    status, created = service.api("POST", "/clusters", config)
    assert status == 201, created
    return str(created["id"])


def worker_pods(kube: FakeKubernetesApi, cluster_id: str) -> list[dict[str, Any]]:
    return [
        pod
        for pod in kube.objects("pods", "loadtest")
        if pod["metadata"]["labels"].get("clientswarm.io/cluster") == cluster_id
    ]


def test_a_cluster_runs_as_an_indexed_job_with_the_token_only_in_its_secret(
    service: ServiceProcess, kube: FakeKubernetesApi, target: str
) -> None:
    cluster_id = submit(service, cluster(target, workers=2))
    view = service.wait_status(cluster_id, timeout_s=60)
    assert view["status"] == "completed", view
    assert [w["state"] for w in view["workers"]] == ["completed", "completed"]
    _, results = service.api("GET", f"/clusters/{cluster_id}/results")
    assert results["total"]["requests"] == 60  # 3 s at 20/s, split across two pods
    assert results["total"]["failed"] == 0

    (job,) = kube.objects("jobs", "loadtest")
    assert job["metadata"]["name"] == f"clientswarm-{cluster_id}"
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    kube.wait_until(lambda: _condition(kube.objects("jobs", "loadtest")[0]) == "Complete")
    (secret,) = kube.objects("secrets", "loadtest")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) > 20 and token not in json.dumps(job)  # only a secretKeyRef in the Job
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Job", job["metadata"]["uid"])
    seen = [(r.method, r.path) for r in kube.requests]
    assert seen[:3] == [
        ("POST", "/api/v1/namespaces/loadtest/secrets"),
        ("POST", "/apis/batch/v1/namespaces/loadtest/jobs"),
        ("PATCH", f"/api/v1/namespaces/loadtest/secrets/clientswarm-{cluster_id}-token"),
    ]
    lists = [r for r in kube.requests if r.method == "GET" and r.path.endswith("/pods")]
    assert lists and all(
        r.query.get("labelSelector") == f"clientswarm.io/cluster={cluster_id}" for r in lists
    )
    assert {rbac_of(r.method, r.path) for r in kube.requests} <= granted_by_role()


def _condition(job: dict[str, Any]) -> str | None:
    conditions = [c["type"] for c in job.get("status", {}).get("conditions", [])]
    final = [c for c in conditions if c in ("Complete", "Failed")]
    return final[-1] if final else None


def test_a_files_cluster_mounts_the_samples_claim_where_the_service_reads_its_samples(
    service: ServiceProcess, kube: FakeKubernetesApi, target: str
) -> None:
    config = {**cluster(target, workers=2, preset="shared-samples"), "sample_path": "files"}
    cluster_id = submit(service, config)
    view = service.wait_status(cluster_id, timeout_s=60)
    assert view["status"] == "completed", view
    _, results = service.api("GET", f"/clusters/{cluster_id}/results")
    assert results["total"]["requests"] == 60  # read back from the files the pods wrote

    samples_dir = (service.data_dir / "samples").absolute()
    (job,) = kube.objects("jobs", "loadtest")
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "samples", "persistentVolumeClaim": {"claimName": SAMPLES_CLAIM}}
    ]
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": "samples", "mountPath": str(samples_dir)}]
    # The fake's pods share this machine's disk, as the claim's pods share its volume.
    assert len(list((samples_dir / cluster_id).iterdir())) == 2


def test_a_files_cluster_without_a_samples_claim_is_refused_before_anything_starts(
    tmp_path: Path, service: ServiceProcess, kube: FakeKubernetesApi, target: str
) -> None:
    samples_dir = (service.data_dir / "samples").absolute()
    status, body = service.api("POST", "/clusters", {**cluster(target), "sample_path": "files"})
    assert status == 422, body
    (line,) = body["error"]["problems"]
    assert line.startswith(
        "spawner.samples_claim: sample_path: files on kubernetes needs a ReadWriteMany "
        f"PersistentVolumeClaim that the service mounts at its samples directory ({samples_dir})"
    ), line
    assert "ask the operator for a spawner preset that sets samples_claim" in line
    # A posted claim reaches storage: only the operator's presets name one.
    posted = {**cluster(target, samples_claim=SAMPLES_CLAIM), "sample_path": "files"}
    status, body = service.api("POST", "/clusters", posted)
    assert status == 422, body
    (line,) = body["error"]["problems"]
    assert line.startswith("spawner.samples_claim: set only by the operator's spawner presets")
    assert kube.requests == []  # nothing was created in Kubernetes

    # clientswarm run: the same rule, one line, before any Job is created.
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="loadtest")
    config = {**cluster(target, workers=1), "sample_path": "files"}
    config["spawner"] = {"kind": "kubernetes", "image": IMAGE}
    file = tmp_path / "c.json"
    file.write_text(json.dumps(config))
    done = subprocess.run(
        [CLI, "run", str(file), "-o", str(tmp_path / "out")],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.splitlines()
    run_samples = (tmp_path / "out" / "samples").absolute()
    assert line.startswith(
        f"error: spawner.samples_claim: sample_path: files on kubernetes needs a ReadWriteMany "
        f"PersistentVolumeClaim that the service mounts at its samples directory ({run_samples})"
    ), line
    assert "name it with spawner.samples_claim" in line
    assert kube.requests == []


def test_an_image_that_cannot_be_pulled_fails_the_workers_with_the_reason(
    service: ServiceProcess, kube: FakeKubernetesApi, target: str
) -> None:
    cluster_id = submit(service, cluster(target, preset="unpullable"))
    view = service.wait_status(cluster_id, timeout_s=30)
    assert view["status"] == "failed"
    for worker in view["workers"]:
        assert worker["state"] == "failed"
        assert "cannot start: ImagePullBackOff" in worker["error"]
        assert "fake.invalid/clientswarm:nope" in worker["error"]
    # Nothing is left pulling forever: the stuck Job (and with it its pods and Secret) is gone.
    kube.wait_until(lambda: not kube.objects("jobs", "loadtest") and not kube.pod_names("loadtest"))
    kube.wait_until(lambda: not kube.objects("secrets", "loadtest"))


def test_an_oomkilled_pod_is_reported_with_its_reason_while_the_other_finishes(
    service: ServiceProcess, kube: FakeKubernetesApi, target: str
) -> None:
    cluster_id = submit(service, cluster(target, workers=2, duration_s=6))
    service.wait_status(cluster_id, ("running",), timeout_s=30)
    time.sleep(1.0)
    victim = next(
        p["metadata"]["name"]
        for p in worker_pods(kube, cluster_id)
        if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    )
    kube.oom_kill("loadtest", victim)
    view = service.wait_status(cluster_id, timeout_s=60)
    assert view["status"] == "completed"  # worker 0 completed: a dead worker is reported
    assert [w["state"] for w in view["workers"]] == ["completed", "lost"]
    error = view["workers"][1]["error"]
    assert f"pod {victim} was OOMKilled (exit code 137)" in error
    assert "spawner.resources.limits.memory" in error
    _, results = service.api("GET", f"/clusters/{cluster_id}/results")
    assert any("worker 1 lost" in warning for warning in results["warnings"])


def test_stop_deletes_the_job_in_the_foreground_and_keeps_what_was_measured(
    service: ServiceProcess, kube: FakeKubernetesApi, target: str
) -> None:
    cluster_id = submit(service, cluster(target, workers=2, duration_s=60))
    service.wait_status(cluster_id, ("running",), timeout_s=30)
    time.sleep(1.5)
    assert service.api("POST", f"/clusters/{cluster_id}/stop")[0] == 202
    view = service.wait_status(cluster_id, timeout_s=30)
    assert view["status"] == "cancelled" and view["reason"] == "stopped by the user"
    assert [w["state"] for w in view["workers"]] == ["cancelled", "cancelled"]
    _, results = service.api("GET", f"/clusters/{cluster_id}/results")
    assert results["total"]["requests"] >= 20  # 1.5 s at 20/s, kept
    deletes = [r for r in kube.requests if r.method == "DELETE" and "/jobs/" in r.path]
    assert deletes and deletes[0].query.get("propagationPolicy") == "Foreground"
    kube.wait_until(lambda: not kube.objects("jobs", "loadtest"))
    assert kube.pod_names("loadtest") == [] and kube.objects("secrets", "loadtest") == []
    assert {rbac_of(r.method, r.path) for r in kube.requests} <= granted_by_role()


def test_a_restarted_service_reattaches_to_the_job_by_its_label(
    tmp_path: Path, kube: FakeKubernetesApi, target: str
) -> None:
    svc = start_service(tmp_path, kube)
    cluster_id = submit(svc, cluster(target, workers=1, duration_s=5))
    svc.wait_status(cluster_id, ("running",), timeout_s=30)
    time.sleep(1.0)
    assert svc.stop(signal.SIGKILL) == -9
    before = len(kube.requests)
    time.sleep(0.5)
    svc = start_service(tmp_path, kube, port=svc.port)
    try:
        view = svc.wait_status(cluster_id, timeout_s=60)
        assert view["status"] == "completed", view
        _, results = svc.api("GET", f"/clusters/{cluster_id}/results")
        assert results["total"]["requests"] == 100  # 5 s at 20/s, none lost
        _, events = svc.api("GET", f"/clusters/{cluster_id}/events")
        assert "recovered" in [e["kind"] for e in events]
        found = [
            r
            for r in kube.requests[before:]
            if r.method == "GET" and r.path == "/apis/batch/v1/namespaces/loadtest/jobs"
        ]
        assert found and found[0].query["labelSelector"] == f"clientswarm.io/cluster={cluster_id}"
    finally:
        svc.stop()


def test_rbac_refusal_fails_the_cluster_with_a_clear_reason_and_leaves_nothing(
    tmp_path: Path, target: str
) -> None:
    with FakeKubernetesApi(tmp_path / "kube", forbidden=[("create", "jobs")]) as kube:
        svc = start_service(tmp_path, kube)
        try:
            cluster_id = submit(svc, cluster(target))
            view = svc.wait_status(cluster_id, timeout_s=30)
        finally:
            svc.stop()
        assert view["status"] == "failed"
        reason = view["reason"]
        assert reason.startswith(
            f"Kubernetes refused to create the Job clientswarm-{cluster_id} in namespace "
            "loadtest: 403 Forbidden: jobs.batch is forbidden"
        ), reason
        assert "deploy/kubernetes/role.yaml" in reason
        assert kube.objects("secrets", "loadtest") == []  # the Secret made first is removed


def test_a_deadline_fails_the_workers_with_the_jobs_reason(
    service: ServiceProcess, kube: FakeKubernetesApi, target: str
) -> None:
    cluster_id = submit(service, cluster(target, workers=1, duration_s=60, active_deadline_s=3))
    view = service.wait_status(cluster_id, timeout_s=60)
    assert view["status"] == "failed", view
    (worker,) = view["workers"]
    assert "DeadlineExceeded" in worker["error"], worker
    _, results = service.api("GET", f"/clusters/{cluster_id}/results")
    assert results["total"]["requests"] > 0  # what it measured before the deadline is kept


def test_clientswarm_run_starts_its_job_as_every_cluster_starts_and_leaves_it_finished(
    tmp_path: Path, kube: FakeKubernetesApi, target: str
) -> None:
    # run submits the Job before its service has loaded; the pods register once it is up.
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="loadtest")
    config = cluster(target, workers=2, duration_s=2)
    config["spawner"] = {"kind": "kubernetes", "image": IMAGE, "workers": 2}
    file = tmp_path / "c.json"
    file.write_text(json.dumps(config))
    done = subprocess.run(
        [CLI, "run", str(file), "-o", str(tmp_path / "out")],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cluster"]["status"] == "completed"
    assert summary["groups"]["hello"]["requests"] == 40
    (job,) = kube.objects("jobs", "loadtest")  # a finished Job stays, as on a service
    assert job["metadata"]["labels"]["clientswarm.io/cluster"] == summary["cluster"]["id"]
    assert {p["status"]["phase"] for p in worker_pods(kube, summary["cluster"]["id"])} == {
        "Succeeded"
    }


def test_a_run_whose_pods_cannot_start_says_why_first_and_shows_no_empty_report(
    tmp_path: Path, kube: FakeKubernetesApi
) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="loadtest")
    config = cluster("http://127.0.0.1:9", workers=1, duration_s=1)
    config["spawner"] = {"kind": "kubernetes", "image": "fake.invalid/clientswarm:nope"}
    file = tmp_path / "c.json"
    file.write_text(json.dumps(config))
    out = tmp_path / "out"
    done = subprocess.run(
        [CLI, "run", str(file), "-o", str(out)],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    (first,) = done.stderr.splitlines()  # the cause, first and on one line
    assert first.startswith("error: the run failed: no worker completed: failed; worker 0 failed:")
    assert 'ImagePullBackOff: Back-off pulling image "fake.invalid/clientswarm:nope"' in first
    assert "Throughput" not in done.stdout and "warning" not in done.stdout  # no empty report
    assert done.stdout.splitlines()[-2:] == [
        f"results: {out}/summary.json, {out}/samples.parquet",
        first.replace("error: the run ", "verdict: "),
    ]
    # Without a kubeconfig the Job cannot even be created: one line, before anything runs.
    done = subprocess.run(
        [CLI, "run", str(file), "-o", str(tmp_path / "out2")],
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert (
        line.startswith("error: cannot create the Job ") and "no Kubernetes configuration" in line
    )
