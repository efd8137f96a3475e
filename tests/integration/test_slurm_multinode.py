"""The slurm spawner across three Slurm nodes in network namespaces, end to end.

One multi-node cluster (``scripts/slurm-multinode-cluster.sh``) serves the module. The service
and the simulator listen on the bridge address, beyond loopback, so the service demands its
API token; workers run as array tasks inside their node's namespaces and reach the service
through ``advertise_url`` on the bridge (their 127.0.0.1 is their node's own loopback). All the
traffic stays on the bridge and in the namespaces the script made.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_process import ServiceProcess, simulator
from slurm_multinode import MultiNodeCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN = "multinode-api-token"
WORKERS = 6
HELLO_RATE = 30  # per second, constant arrivals: the counts are exact
ROUTES = {"hello": "/", "chat": "/v1/chat/completions"}  # what each group's interaction sends


@pytest.fixture(scope="module")
def target(slurm_multinode: MultiNodeCluster) -> Iterator[str]:
    bridge = slurm_multinode.bridge_address
    with simulator("--host", bridge, "--ttft-ms", "10", "--itl-ms", "2") as url:
        yield url


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, slurm_multinode: MultiNodeCluster
) -> Iterator[ServiceProcess]:
    tmp_path = tmp_path_factory.mktemp("multinode")
    preset = tmp_path / "preset-multinode.json"
    preset.write_text(json.dumps({"kind": "slurm", "python": sys.executable}))
    # Beyond loopback: the service demands its token, and the target needs allowing.
    flags = (
        *("--host", slurm_multinode.bridge_address),
        *("--allow-target", slurm_multinode.subnet),
        *("--lost-after-s", "5"),
        *("--spawner-preset", f"multinode={preset}"),
    )
    svc = ServiceProcess(tmp_path / "svc", token=TOKEN, extra=flags, env=slurm_multinode.env)
    with svc:
        yield svc


def multinode_cluster(
    target: str, service: ServiceProcess, duration_s: float, *, chat: bool = False
) -> dict[str, Any]:
    groups: list[dict[str, Any]] = [
        {
            "name": "hello",
            "clients": WORKERS,
            "interaction": {"kind": "hello"},
            "load": {"kind": "open", "rate": HELLO_RATE, "arrival": "constant"},
            "stop": {"duration_s": duration_s},
        }
    ]
    if chat:
        groups.append(
            {
                "name": "chat",
                "clients": WORKERS,
                "interaction": {
                    "kind": "chat",
                    "stream": True,
                    "prompts": ["Tell me a story."],
                    "max_tokens": 16,
                },
                "load": {"kind": "closed", "think_time_s": 0.05},
                "stop": {"duration_s": duration_s},
            }
        )
    return {
        "name": "multi-node",
        "target": {"url": target, "model": "mock-model", "timeout_s": 10},
        "spawner": {
            "kind": "slurm",
            "preset": "multinode",
            "partition": "multi",
            "workers": WORKERS,
            "advertise_url": service.url,
        },
        "groups": groups,
    }


def target_seen(url: str) -> Counter[str]:
    """The requests the simulator has received, by route."""
    with urllib.request.urlopen(url + "/mock/stats", timeout=10) as answer:
        return Counter(json.loads(answer.read())["requests"])


def load_seen(url: str, before: Counter[str]) -> Counter[str]:
    """The requests of each group's route the simulator received since ``before`` (the
    preflight's and the metric scrapes' are no load), by group."""
    seen = target_seen(url) - before
    return Counter({group: seen[route] for group, route in ROUTES.items() if seen[route]})


def stored_samples(service: ServiceProcess, cluster_id: str) -> list[dict[str, Any]]:
    """Every sample the store holds for the cluster (cancelled ones included)."""
    status, raw, _ = service.request("GET", f"/clusters/{cluster_id}/samples?format=jsonl")
    assert status == 200, raw[:500]
    return [json.loads(line) for line in raw.splitlines()]


def test_the_service_on_the_bridge_demands_its_token(
    service: ServiceProcess, slurm_multinode: MultiNodeCluster
) -> None:
    assert service.url.startswith(f"http://{slurm_multinode.bridge_address}:")
    assert service.api("GET", "/clusters", token="")[0] == 401
    assert service.api("GET", "/clusters")[0] == 200


def test_a_task_sees_its_own_node_only(slurm_multinode: MultiNodeCluster, tmp_path: Path) -> None:
    """A task runs in its node's namespaces: the node's hostname and address, the bridge within
    reach, and a 127.0.0.1 that is its node's own, not this machine's."""
    bridge = slurm_multinode.bridge_address
    with (
        socket.create_server(("127.0.0.1", 0)) as here,
        socket.create_server((bridge, 0)) as on_bridge,
    ):
        script = (
            'reach() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && echo yes || echo no; }\n'
            "echo \"$(hostname) $(ip -4 -o addr show dev eth0 | awk '{ print $4 }')\" "
            f'"$(reach 127.0.0.1 {here.getsockname()[1]})" '
            f'"$(reach {bridge} {on_bridge.getsockname()[1]})"\n'
        )
        (tmp_path / "probe.sh").write_text("#!/bin/bash\n" + script)
        job = slurm_multinode.sbatch(
            f"--array=0-{len(slurm_multinode.nodes) - 1}",
            f"--partition={slurm_multinode.partition}",
            f"--output={tmp_path}/task-%a.out",
            f"--chdir={tmp_path}",
            str(tmp_path / "probe.sh"),
        )
        states = slurm_multinode.wait_tasks(job, timeout=30)
    assert set(states.values()) == {"COMPLETED"}, states
    seen = sorted(path.read_text().strip() for path in tmp_path.glob("task-*.out"))
    assert seen == [
        f"{node} {address}/24 no yes" for node, address in slurm_multinode.nodes.items()
    ]


# files: the high-rate path, each node's workers writing their samples to the service's data
# directory (one filesystem for every node here, as a cluster's shared filesystem is).
@pytest.mark.parametrize("sample_path", ["service", "files"])
def test_array_tasks_land_on_all_three_nodes(
    service: ServiceProcess, slurm_multinode: MultiNodeCluster, target: str, sample_path: str
) -> None:
    seen_before = target_seen(target)
    config = multinode_cluster(target, service, duration_s=3, chat=True)
    config["sample_path"] = sample_path
    status, created = service.api("POST", "/clusters", config)
    assert status == 201, created
    view = service.wait_status(created["id"], timeout_s=120)
    assert view["status"] == "completed", view
    workers = view["workers"]
    assert [w["state"] for w in workers] == ["completed"] * WORKERS, workers

    # Each worker reports its host name: its node's (UTS namespace), the node Slurm ran it on.
    hosts = {w["index"]: w["host"] for w in workers}
    assert set(hosts.values()) == set(slurm_multinode.nodes), hosts
    assert slurm_multinode.task_hosts(view["spawner_state"]["job_id"]) == hosts

    _, results = service.api("GET", f"/clusters/{created['id']}/results")
    hello, chat = results["groups"]["hello"], results["groups"]["chat"]
    assert hello["requests"] == HELLO_RATE * 3
    assert chat["requests"] > 0
    assert hello["failed"] == chat["failed"] == 0
    assert results["total"]["requests"] == sum(w["samples"] for w in workers)
    # Nothing lost on the way: every request the target saw is a stored sample (those still in
    # flight when the load stopped included, as cancelled ones).
    stored = stored_samples(service, created["id"])
    assert load_seen(target, seen_before) == Counter(s["group"] for s in stored)
    assert {s["worker"] for s in stored} == set(hosts)


def test_a_node_taken_down_mid_run_ends_only_its_workers(
    service: ServiceProcess, slurm_multinode: MultiNodeCluster, target: str
) -> None:
    duration_s = 6
    seen_before = target_seen(target)
    config = multinode_cluster(target, service, duration_s)
    config["preflight"] = False  # its GET / would count as one more hello request
    status, created = service.api("POST", "/clusters", config)
    assert status == 201, created
    cluster_id = created["id"]
    workers = _wait_all_measuring(service, cluster_id)
    down = "node2"
    on_down = {w["index"] for w in workers if w["host"] == down}
    assert on_down, workers
    try:
        slurm_multinode.take_down(down, "clientswarm-test")
        view = service.wait_status(cluster_id, timeout_s=60)
    finally:
        slurm_multinode.resume(down)

    assert view["status"] == "completed", view
    share = HELLO_RATE * duration_s // WORKERS  # each worker's slice of the arrivals
    for worker in view["workers"]:
        if worker["index"] in on_down:
            # It heard SIGTERM as Slurm killed the job and shipped what it had measured; the
            # spawner says why, in Slurm's words.
            assert worker["state"] in ("cancelled", "lost", "failed"), worker
            assert "NODE_FAIL (NodeDown)" in (worker["error"] or ""), worker
            assert 0 < worker["samples"] < share, worker
        else:
            assert worker["state"] == "completed", worker
            assert worker["samples"] == share, worker
    job_id = view["spawner_state"]["job_id"]
    states = slurm_multinode.task_states(int(job_id))
    assert {i for i, state in states.items() if state == "NODE_FAIL"} == on_down, states

    _, results = service.api("GET", f"/clusters/{cluster_id}/results")
    hello = results["groups"]["hello"]
    assert hello["failed"] == 0
    assert hello["requests"] == sum(w["samples"] for w in view["workers"])
    # The workers on the downed node stopped on Slurm's SIGTERM and shipped their requests in
    # flight as cancelled samples: still nothing the target saw is missing.
    stored = stored_samples(service, cluster_id)
    assert load_seen(target, seen_before) == Counter(s["group"] for s in stored)


def _wait_all_measuring(service: ServiceProcess, cluster_id: str) -> list[dict[str, Any]]:
    """The workers once every one runs and has shipped samples."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, view = service.api("GET", f"/clusters/{cluster_id}")
        workers: list[dict[str, Any]] = view["workers"]
        if all(w["state"] == "running" and w["samples"] > 0 for w in workers):
            return workers
        assert view["status"] in ("pending", "starting", "running"), view
        time.sleep(0.2)
    raise AssertionError(f"cluster {cluster_id}: not every worker measuring after 120 s")
