"""The fake Kubernetes API (tests/fake_kubernetes_api.py), driven by lightkube over real HTTP.

These check that the fake answers as the real API does for the calls it implements, and that its
job controller runs pods as real processes. They use plain shell containers, no clientswarm code.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod, Secret
from lightkube.types import CascadeType, PatchType

from fake_kubernetes_api import FakeKubernetesApi, _intervals

pytestmark = pytest.mark.timeout(60)

NS = "default"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKubernetesApi]:
    with FakeKubernetesApi(tmp_path / "fake-k8s", pull_backoff_after_s=0.1) as api:
        yield api


def kube_client(fake: FakeKubernetesApi, path: Path) -> AsyncClient:
    return AsyncClient(config=KubeConfig.from_file(fake.write_kubeconfig(path, namespace=NS)))


@pytest.fixture
async def client(fake: FakeKubernetesApi, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    client = kube_client(fake, tmp_path / "kubeconfig")
    yield client
    await client.close()


def job_manifest(
    name: str,
    script: str,
    *,
    completions: int = 1,
    image: str = "busybox:1.36",
    env: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> Job:
    return from_dict(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": {"app": "swarm", "run": name}},
            "spec": {
                "completionMode": "Indexed",
                "completions": completions,
                "parallelism": completions,
                "backoffLimit": 0,
                **spec,
                "template": {
                    "metadata": {"labels": {"app": "swarm", "run": name}},
                    "spec": {
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "worker",
                                "image": image,
                                "command": ["sh", "-c", script],
                                "env": env or [],
                            }
                        ],
                    },
                },
            },
        }
    )


def secret_manifest(name: str, string_data: dict[str, str]) -> Secret:
    return from_dict(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {"app": "swarm"}},
            "stringData": string_data,
        }
    )


def stored(fake: FakeKubernetesApi, resource: str, name: str) -> dict[str, Any] | None:
    return next((o for o in fake.objects(resource, NS) if o["metadata"]["name"] == name), None)


def job_conditions(fake: FakeKubernetesApi, name: str) -> list[str]:
    job = stored(fake, "jobs", name)
    return [c["type"] for c in (job or {}).get("status", {}).get("conditions", [])]


def pods_of(fake: FakeKubernetesApi, job: str) -> dict[int, dict[str, Any]]:
    return {
        int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]): p
        for p in fake.objects("pods", NS)
        if p["metadata"]["labels"].get("job-name") == job
    }


def phases(fake: FakeKubernetesApi, job: str) -> dict[int, str]:
    return {i: p["status"]["phase"] for i, p in pods_of(fake, job).items()}


def container_state(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]
    return state


async def read_log(client: AsyncClient, pod: str, **kwargs: Any) -> str:
    return "".join([line async for line in client.log(pod, namespace=NS, **kwargs)])


async def test_indexed_job_of_three_pods_completes(
    fake: FakeKubernetesApi, client: AsyncClient
) -> None:
    created = await client.create(
        job_manifest(
            "swarm", "echo hello $JOB_COMPLETION_INDEX from $HOSTNAME; echo bye", completions=3
        )
    )
    assert created.metadata.uid and created.metadata.resourceVersion
    assert created.spec.selector.matchLabels == {
        "batch.kubernetes.io/controller-uid": created.metadata.uid
    }
    await fake.wait_until_async(lambda: "Complete" in job_conditions(fake, "swarm"), 15)

    job = await client.get(Job, "swarm", namespace=NS)
    assert job.status.succeeded == 3
    assert job.status.active is None and job.status.failed is None
    assert job.status.completedIndexes == "0-2"
    assert job.status.completionTime is not None and job.status.startTime is not None
    assert job.status.terminating == 0 and job.status.ready == 0
    conditions = {c.type: c for c in job.status.conditions}
    assert list(conditions) == ["SuccessCriteriaMet", "Complete"]
    assert conditions["Complete"].status == "True"
    assert conditions["Complete"].reason == "CompletionsReached"
    assert conditions["Complete"].message == "Reached expected number of succeeded pods"

    pods = [p async for p in client.list(Pod, namespace=NS, labels={"job-name": "swarm"})]
    assert len(pods) == 3
    by_index = {int(p.metadata.labels["batch.kubernetes.io/job-completion-index"]): p for p in pods}
    assert sorted(by_index) == [0, 1, 2]
    for index, pod in by_index.items():
        assert re.fullmatch(rf"swarm-{index}-[a-z]{{5}}", pod.metadata.name)
        assert pod.metadata.annotations["batch.kubernetes.io/job-completion-index"] == str(index)
        assert pod.metadata.labels["app"] == "swarm"
        assert pod.metadata.labels["batch.kubernetes.io/controller-uid"] == created.metadata.uid
        owner = pod.metadata.ownerReferences[0]
        assert (owner.kind, owner.name, owner.uid) == ("Job", "swarm", created.metadata.uid)
        assert owner.controller and owner.blockOwnerDeletion
        assert pod.spec.nodeName == "fake-node"
        assert pod.status.phase == "Succeeded"
        status = pod.status.containerStatuses[0]
        assert status.name == "worker" and status.image == "busybox:1.36"
        assert status.state.terminated.exitCode == 0
        assert status.state.terminated.reason == "Completed"
        assert status.ready is False and status.restartCount == 0
        log = await read_log(client, pod.metadata.name, container="worker")
        # Indexed Jobs set the pod's hostname to <job>-<index>, which is what HOSTNAME shows.
        assert log == f"hello {index} from swarm-{index}\nbye\n"
        assert await read_log(client, pod.metadata.name, tail_lines=1) == "bye\n"
        stamped = await read_log(client, pod.metadata.name, timestamps=True)
        assert re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z .*\n){2}", stamped)

    jobs = [j async for j in client.list(Job, namespace=NS, labels={"app": "swarm"})]
    assert [j.metadata.name for j in jobs] == ["swarm"]
    assert [j async for j in client.list(Job, namespace=NS, labels={"app": "other"})] == []
    lists = [r for r in fake.requests if r.path.endswith("/pods") and r.method == "GET"]
    assert lists[0].query["labelSelector"] == "job-name=swarm" and lists[0].status == 200


async def test_failed_index_leaves_the_others_running(
    fake: FakeKubernetesApi, client: AsyncClient
) -> None:
    script = 'if [ "$JOB_COMPLETION_INDEX" = 1 ]; then echo boom; exit 3; fi; sleep 1; echo ok'
    await client.create(job_manifest("perindex", script, completions=3, backoffLimitPerIndex=0))
    await fake.wait_until_async(lambda: phases(fake, "perindex").get(1) == "Failed", 10)
    assert phases(fake, "perindex") == {0: "Running", 1: "Failed", 2: "Running"}
    assert job_conditions(fake, "perindex") == []
    failed = pods_of(fake, "perindex")[1]
    assert container_state(failed)["terminated"]["exitCode"] == 3
    assert container_state(failed)["terminated"]["reason"] == "Error"

    await fake.wait_until_async(lambda: "Failed" in job_conditions(fake, "perindex"), 10)
    job = await client.get(Job, "perindex", namespace=NS)
    assert [c.type for c in job.status.conditions] == ["FailureTarget", "Failed"]
    assert job.status.conditions[-1].reason == "FailedIndexes"
    assert job.status.conditions[-1].message == "Job has failed indexes"
    assert job.status.failedIndexes == "1"
    assert job.status.completedIndexes == "0,2"
    assert (job.status.succeeded, job.status.failed) == (2, 1)
    assert job.status.completionTime is None
    assert phases(fake, "perindex") == {0: "Succeeded", 1: "Failed", 2: "Succeeded"}


async def test_unpullable_image_backs_off(fake: FakeKubernetesApi, client: AsyncClient) -> None:
    await client.create(job_manifest("nopull", "echo never", image="fake.invalid/nope:1"))

    def waiting_reason() -> str | None:
        pods = pods_of(fake, "nopull")
        return container_state(pods[0]).get("waiting", {}).get("reason") if pods else None

    await fake.wait_until_async(lambda: waiting_reason() == "ImagePullBackOff", 5)
    pod = (await client.get(Pod, fake.pod_names(NS)[0], namespace=NS)).to_dict()
    assert pod["status"]["phase"] == "Pending"
    status = pod["status"]["containerStatuses"][0]
    assert status["state"]["waiting"] == {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "fake.invalid/nope:1"',
    }
    assert (status["ready"], status["started"], status["imageID"]) == (False, False, "")
    with pytest.raises(ApiError) as error:
        await read_log(client, pod["metadata"]["name"], container="worker")
    assert error.value.status.code == 400 and error.value.status.reason == "BadRequest"
    assert error.value.status.message == (
        f'container "worker" in pod "{pod["metadata"]["name"]}" is waiting to start:'
        " trying and failing to pull image"
    )
    job = await client.get(Job, "nopull", namespace=NS)
    assert job.status.active == 1 and job.status.ready == 0 and not job.status.conditions


async def test_secret_env_missing_then_created(
    fake: FakeKubernetesApi, client: AsyncClient
) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    await client.create(job_manifest("needs-secret", 'echo "token=$TOKEN"', env=env))
    await fake.wait_until_async(lambda: bool(pods_of(fake, "needs-secret")), 5)
    pod = pods_of(fake, "needs-secret")[0]
    assert pod["status"]["phase"] == "Pending"
    assert container_state(pod)["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "creds" not found',
    }
    with pytest.raises(ApiError) as error:
        await read_log(client, pod["metadata"]["name"])
    assert error.value.status.message.endswith("is waiting to start: CreateContainerConfigError")

    secret = await client.create(secret_manifest("creds", {"token": "s3cret value"}))
    assert secret.data == {"token": base64.b64encode(b"s3cret value").decode()}
    assert secret.stringData is None and secret.type == "Opaque"
    # The kubelet retries: the container starts once the Secret exists.
    await fake.wait_until_async(lambda: phases(fake, "needs-secret") == {0: "Succeeded"}, 10)
    assert await read_log(client, pod["metadata"]["name"]) == "token=s3cret value\n"

    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nokey"}}}]
    await client.create(job_manifest("needs-key", "echo never", env=env))
    await fake.wait_until_async(lambda: bool(pods_of(fake, "needs-key")), 5)
    assert container_state(pods_of(fake, "needs-key")[0])["waiting"]["message"] == (
        "couldn't find key nokey in Secret default/creds"
    )


async def test_secrets_list_patch_delete(fake: FakeKubernetesApi, client: AsyncClient) -> None:
    await client.create(secret_manifest("a", {"k": "1"}))
    await client.create(secret_manifest("b", {"k": "2"}))
    listed = [
        s.metadata.name async for s in client.list(Secret, namespace=NS, labels={"app": "swarm"})
    ]
    assert listed == ["a", "b"]
    before = await client.get(Secret, "a", namespace=NS)
    patched = await client.patch(
        Secret,
        "a",
        {"metadata": {"labels": {"extra": "yes"}}, "stringData": {"more": "x"}},
        namespace=NS,
        patch_type=PatchType.MERGE,
    )
    assert patched.metadata.labels == {"app": "swarm", "extra": "yes"}
    assert set(patched.data) == {"k", "more"}
    assert int(patched.metadata.resourceVersion) > int(before.metadata.resourceVersion)
    assert patched.metadata.uid == before.metadata.uid
    with pytest.raises(ApiError) as error:
        await client.patch(
            Secret, "a", [{"op": "remove", "path": "/data"}], patch_type=PatchType.JSON
        )
    assert error.value.status.code == 415
    await client.delete(Secret, "b", namespace=NS)
    assert [s["metadata"]["name"] for s in fake.objects("secrets", NS)] == ["a"]
    with pytest.raises(ApiError) as error:
        await client.get(Secret, "b", namespace=NS)
    assert error.value.status.code == 404
    assert error.value.status.message == 'secrets "b" not found'


async def test_oom_kill(fake: FakeKubernetesApi, client: AsyncClient) -> None:
    await client.create(job_manifest("oom", "echo up; exec sleep 30"))
    await fake.wait_until_async(lambda: phases(fake, "oom") == {0: "Running"}, 5)
    running = pods_of(fake, "oom")[0]
    assert running["status"]["podIP"] == "127.0.0.1"
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]}["Ready"] == "True"
    assert container_state(running)["running"]["startedAt"]
    fake.oom_kill(NS, running["metadata"]["name"])
    pod = pods_of(fake, "oom")[0]
    assert pod["status"]["phase"] == "Failed"
    terminated = container_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
    # backoffLimit 0 and no backoffLimitPerIndex: the Job fails at once.
    await fake.wait_until_async(lambda: "Failed" in job_conditions(fake, "oom"), 5)
    job = await client.get(Job, "oom", namespace=NS)
    assert job.status.conditions[-1].reason == "BackoffLimitExceeded"
    assert job.status.conditions[-1].message == "Job has reached the specified backoff limit"
    assert job.status.failed == 1


async def test_evict(fake: FakeKubernetesApi, client: AsyncClient) -> None:
    script = "trap 'exit 0' TERM; sleep 30 & wait"
    await client.create(job_manifest("evict", script, completions=2, backoffLimitPerIndex=0))
    await fake.wait_until_async(lambda: phases(fake, "evict") == {0: "Running", 1: "Running"}, 5)
    fake.evict(NS, pods_of(fake, "evict")[0]["metadata"]["name"])
    await fake.wait_until_async(lambda: phases(fake, "evict").get(0) == "Failed", 5)
    pod = pods_of(fake, "evict")[0]
    assert pod["status"]["reason"] == "Evicted"
    assert pod["status"]["message"] == "The node was low on resource: memory. "
    disruption = pod["status"]["conditions"][0]
    assert (disruption["type"], disruption["status"], disruption["reason"]) == (
        "DisruptionTarget",
        "True",
        "TerminationByKubelet",
    )
    assert phases(fake, "evict")[1] == "Running"
    await fake.wait_until_async(
        lambda: (stored(fake, "jobs", "evict") or {}).get("status", {}).get("failedIndexes") == "0",
        5,
    )


async def test_foreground_delete_waits_for_pods_and_collects_the_secret(
    fake: FakeKubernetesApi, client: AsyncClient
) -> None:
    script = "trap 'echo stopping; sleep 0.5; exit 0' TERM; echo started; sleep 30 & wait"
    job = await client.create(job_manifest("fg", script))
    await client.create(secret_manifest("fg-env", {"k": "v"}))
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "fg",
        "uid": job.metadata.uid,
        "blockOwnerDeletion": True,
    }
    await client.patch(
        Secret,
        "fg-env",
        {"metadata": {"ownerReferences": [owner]}},
        namespace=NS,
        patch_type=PatchType.MERGE,
    )
    await fake.wait_until_async(lambda: phases(fake, "fg") == {0: "Running"}, 5)
    pod_name = fake.pod_names(NS)[0]
    follow = asyncio.create_task(read_log(client, pod_name, follow=True))
    await asyncio.sleep(0.2)
    await client.delete(Job, "fg", namespace=NS, cascade=CascadeType.FOREGROUND)

    deleting = await client.get(Job, "fg", namespace=NS)
    assert deleting.metadata.deletionTimestamp is not None
    assert deleting.metadata.finalizers == ["foregroundDeletion"]
    pod = await client.get(Pod, pod_name, namespace=NS)
    assert pod.metadata.deletionTimestamp is not None
    assert pod.metadata.deletionGracePeriodSeconds == 5

    await fake.wait_until_async(lambda: stored(fake, "jobs", "fg") is None, 10)
    with pytest.raises(ApiError) as error:
        await client.get(Job, "fg", namespace=NS)
    assert error.value.status.code == 404 and error.value.status.reason == "NotFound"
    assert error.value.status.message == 'jobs.batch "fg" not found'
    assert error.value.status.details.group == "batch"
    with pytest.raises(ApiError):
        await client.get(Secret, "fg-env", namespace=NS)
    assert fake.pod_names(NS) == []
    log = next((fake.work_dir / "logs").glob(f"*{pod_name}*")).read_text()
    assert log == "started\nstopping\n"
    # Following a log ends when the container does.
    assert await asyncio.wait_for(follow, 5) == "started\nstopping\n"


async def test_background_and_default_orphan_deletion(
    fake: FakeKubernetesApi, client: AsyncClient
) -> None:
    await client.create(job_manifest("bg", "exec sleep 30"))
    await client.create(job_manifest("orphan", "exec sleep 30"))
    await fake.wait_until_async(lambda: len(fake.pod_names(NS)) == 2, 5)
    await client.delete(Job, "bg", namespace=NS, cascade=CascadeType.BACKGROUND)
    assert stored(fake, "jobs", "bg") is None
    await fake.wait_until_async(lambda: not pods_of(fake, "bg"), 5)
    # No propagationPolicy: batch/v1 orphans the Job's pods, as the real API server does.
    await client.delete(Job, "orphan", namespace=NS)
    assert stored(fake, "jobs", "orphan") is None
    await asyncio.sleep(0.2)
    (pod,) = pods_of(fake, "orphan").values()
    assert pod["status"]["phase"] == "Running" and "ownerReferences" not in pod["metadata"]


async def test_active_deadline(fake: FakeKubernetesApi, client: AsyncClient) -> None:
    await client.create(
        job_manifest("deadline", "exec sleep 30", completions=2, activeDeadlineSeconds=1)
    )
    await fake.wait_until_async(lambda: "Failed" in job_conditions(fake, "deadline"), 10)
    job = await client.get(Job, "deadline", namespace=NS)
    assert [c.type for c in job.status.conditions] == ["FailureTarget", "Failed"]
    assert job.status.conditions[-1].reason == "DeadlineExceeded"
    assert job.status.conditions[-1].message == "Job was active longer than specified deadline"
    assert job.status.active is None and job.status.terminating == 0
    assert fake.pod_names(NS) == []


async def test_ttl_after_finished(fake: FakeKubernetesApi, client: AsyncClient) -> None:
    await client.create(job_manifest("ttl", "true", ttlSecondsAfterFinished=1))
    await fake.wait_until_async(lambda: "Complete" in job_conditions(fake, "ttl"), 5)
    assert fake.pod_names(NS)
    await fake.wait_until_async(lambda: stored(fake, "jobs", "ttl") is None, 5)
    await fake.wait_until_async(lambda: not fake.pod_names(NS), 5)


async def test_forbidden_verbs(tmp_path: Path) -> None:
    forbidden = [("create", "jobs"), ("get", "pods/log")]
    with FakeKubernetesApi(tmp_path / "k8s", forbidden=forbidden) as fake:
        client = kube_client(fake, tmp_path / "kubeconfig")
        try:
            with pytest.raises(ApiError) as error:
                await client.create(job_manifest("nope", "true"))
            status = error.value.status
            assert (status.code, status.reason) == (403, "Forbidden")
            assert status.message == (
                'jobs.batch is forbidden: User "system:serviceaccount:clientswarm:clientswarm"'
                ' cannot create resource "jobs" in API group "batch" in the namespace "default"'
            )
            assert (status.details.group, status.details.kind) == ("batch", "jobs")
            with pytest.raises(ApiError) as error:
                await read_log(client, "any")
            assert error.value.status.message == (
                'pods "any" is forbidden: User "system:serviceaccount:clientswarm:clientswarm"'
                ' cannot get resource "pods/log" in API group "" in the namespace "default"'
            )
            assert [r.status for r in fake.requests] == [403, 403]
        finally:
            await client.close()


async def test_authentication(fake: FakeKubernetesApi, tmp_path: Path) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.url}/api/v1/namespaces/default/pods") as response,
    ):
        assert response.status == 401
        assert response.headers["Content-Type"] == "application/json"
        assert await response.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    path = fake.write_kubeconfig(tmp_path / "kubeconfig")
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    path.write_text(yaml.safe_dump(config))
    client = AsyncClient(config=KubeConfig.from_file(path))
    try:
        with pytest.raises(ApiError) as error:
            await client.get(Job, "x", namespace=NS)
        assert error.value.status.code == 401
    finally:
        await client.close()


async def test_request_errors(fake: FakeKubernetesApi, client: AsyncClient) -> None:
    await client.create(job_manifest("dup", "true"))
    with pytest.raises(ApiError) as error:
        await client.create(job_manifest("dup", "true"))
    status = error.value.status
    assert (status.code, status.reason) == (409, "AlreadyExists")
    assert status.message == 'jobs.batch "dup" already exists'
    await client.create(secret_manifest("dup", {}))
    with pytest.raises(ApiError) as error:
        await client.create(secret_manifest("dup", {}))
    assert error.value.status.message == 'secrets "dup" already exists'

    nameless = job_manifest("x", "true")
    nameless.metadata.name = None
    with pytest.raises(ApiError) as error:
        await client.create(nameless)
    assert (error.value.status.code, error.value.status.reason) == (422, "Invalid")
    assert error.value.status.message == (
        'Job.batch "" is invalid: metadata.name: Required value: name or generateName is required'
    )
    not_indexed = job_manifest("x", "true")
    not_indexed.spec.completionMode = "NonIndexed"
    with pytest.raises(ApiError) as error:
        await client.create(not_indexed)
    assert error.value.status.code == 422

    headers = {"Authorization": f"Bearer {fake.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{fake.url}/api/v1/namespaces/default/secrets"
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "o"}}
        async with session.post(url, json=body) as response:
            assert response.status == 400
            assert (await response.json())["reason"] == "BadRequest"
        async with session.get(f"{fake.url}/api/v1/namespaces/default/configmaps") as response:
            assert response.status == 404
            assert (await response.json())["reason"] == "NotFound"
        async with session.put(f"{url}/dup", json={}) as response:
            assert response.status == 405
        async with session.get(url, params={"labelSelector": "app in (swarm,x),!nope"}) as response:
            listing = await response.json()
            assert listing["kind"] == "SecretList" and listing["apiVersion"] == "v1"
            assert [i["metadata"]["name"] for i in listing["items"]] == ["dup"]
            assert "continue" not in listing["metadata"]
            assert listing["metadata"]["resourceVersion"].isdigit()
    with pytest.raises(ApiError) as error:
        await client.get(Pod, "missing", namespace=NS)
    assert error.value.status.message == 'pods "missing" not found'


async def test_stop_kills_pod_processes(tmp_path: Path) -> None:
    fake = FakeKubernetesApi(tmp_path / "k8s").start()
    client = kube_client(fake, tmp_path / "kubeconfig")
    try:
        await client.create(job_manifest("long", "echo $$$$ > pid; sleep 30 & wait", completions=2))
        # Kubernetes expands $$ in commands to $ (and $(VAR) to a variable), hence $$$$.
        pid_files = lambda: list((fake.work_dir / "pods").glob("*/*/pid"))  # noqa: E731
        await fake.wait_until_async(lambda: len(pid_files()) == 2, 5)
        await asyncio.sleep(0.1)
        pids = [int(p.read_text()) for p in pid_files()]
    finally:
        await client.close()
        fake.stop()
    fake.stop()  # a second stop is harmless
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_intervals_format() -> None:
    assert _intervals([]) == ""
    assert _intervals([0, 1, 2, 5]) == "0-2,5"
    assert _intervals([3, 4]) == "3,4"
    assert _intervals([7, 0, 2, 3, 4, 9, 10]) == "0,2-4,7,9,10"
