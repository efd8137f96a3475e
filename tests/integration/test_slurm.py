"""The slurm spawner against a real single-node Slurm (started by the tests), end to end.

The service runs as a real process, submits one job array per cluster through sbatch (or
slurmrestd), and its workers run as Slurm array tasks against the real simulator.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_process import ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    with simulator("--ttft-ms", "10", "--itl-ms", "2") as url:
        yield url


def cluster(
    target: str, slurm: dict[str, Any], duration_s: float = 3, preset: str = "dev"
) -> dict[str, Any]:
    return {
        "name": "on-slurm",
        "target": {"url": target, "model": "mock-model", "timeout_s": 10},
        # The interpreter (and any setup line) comes from the operator's preset: a shared
        # service takes no posted code-bearing option.
        "spawner": {"kind": "slurm", "preset": preset, "partition": "debug", **slurm},
        "groups": [
            {
                "name": "hello",
                "clients": 8,
                "interaction": {"kind": "hello"},
                "load": {"kind": "open", "rate": 40, "arrival": "constant"},
                "stop": {"duration_s": duration_s},
            }
        ],
    }


def squeue_states(slurm: Any, job_id: str) -> list[str]:
    """The states of the array's tasks (squeue 22.05 lists every job: filter by array id)."""
    done = slurm.run("squeue", "--json", "-t", "all")
    jobs = json.loads(done.stdout).get("jobs", [])
    return sorted({str(j["job_state"]) for j in jobs if str(j.get("array_job_id")) == job_id})


PRESETS: dict[str, dict[str, Any]] = {
    "dev": {"kind": "slurm", "python": sys.executable},
    "broken-setup": {
        "kind": "slurm",
        "python": sys.executable,
        "setup": ["echo 'loading the python module'", "module-that-does-not-exist"],
    },
}


def slurm_service(
    tmp_path: Path,
    *,
    lost_after_s: float = 5,
    port: int = 0,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    presets: dict[str, dict[str, Any]] = PRESETS,
) -> ServiceProcess:
    """``serve`` with the spawner presets the tests name (written next to its data)."""
    flags = ["--lost-after-s", str(lost_after_s), *extra]
    for name, options in presets.items():
        path = tmp_path / f"preset-{name}.yaml"
        path.write_text(json.dumps(options))
        flags += ["--spawner-preset", f"{name}={path}"]
    return ServiceProcess(tmp_path / "svc", port=port, extra=tuple(flags), env=env)


@pytest.fixture
def service(tmp_path: Path, slurm_cluster: Any) -> Iterator[ServiceProcess]:
    with slurm_service(tmp_path) as svc:
        yield svc


def test_a_cluster_of_four_array_tasks_runs_to_completion(
    service: ServiceProcess, slurm_cluster: Any, target: str
) -> None:
    _four_workers_complete(service, target, {"workers": 4})


def test_the_same_through_slurmrestd(tmp_path: Path, slurm_cluster: Any, target: str) -> None:
    if slurm_cluster.rest_socket is None:
        pytest.skip("slurmrestd is not running in the dev cluster")
    # slurmrestd runs jobs as its unprivileged user: it needs an interpreter and a checkout it
    # can read (this checkout's venv may live under root's home) and logs it can write.
    python, pythonpath = _python_for(slurm_cluster.rest_user)
    rest = {
        "kind": "slurm",
        "submit_via": "rest",
        "rest": {"socket": str(slurm_cluster.rest_socket)},
        "log_dir": str(slurm_cluster.scratch_dir()),
        "python": python,
    }
    env = {"PYTHONPATH": pythonpath}
    # The jobs get PYTHONPATH only because the operator passes it on to workers.
    with slurm_service(
        tmp_path, env=env, extra=("--worker-env", "PYTHONPATH"), presets={"rest": rest}
    ) as service:
        _four_workers_complete(service, target, {"workers": 4}, preset="rest")


def _python_for(user: str) -> tuple[str, str]:
    """An interpreter ``user`` can run that imports clientswarm, or skip saying why not."""
    import site

    import clientswarm

    src = str(Path(clientswarm.__file__).parents[1])
    pythonpath = ":".join([src, *site.getsitepackages()])
    probe = subprocess.run(
        [
            "/usr/sbin/runuser",
            "-u",
            user,
            "--",
            "/usr/bin/python3",
            "-c",
            "import clientswarm, aiohttp",
        ],
        env={"PYTHONPATH": pythonpath, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"user {user} cannot import this checkout: {probe.stderr.strip()[-200:]}")
    return "/usr/bin/python3", pythonpath


def _four_workers_complete(
    service: ServiceProcess, target: str, slurm: dict[str, Any], preset: str = "dev"
) -> None:
    status, created = service.api("POST", "/clusters", cluster(target, slurm, preset=preset))
    assert status == 201, created
    view = service.wait_status(created["id"], timeout_s=120)
    assert view["status"] == "completed", view
    assert [w["state"] for w in view["workers"]] == ["completed"] * 4
    _, results = service.api("GET", f"/clusters/{created['id']}/results")
    assert results["groups"]["hello"]["requests"] == 120
    assert results["groups"]["hello"]["failed"] == 0


def test_stop_cancels_the_array(service: ServiceProcess, slurm_cluster: Any, target: str) -> None:
    _, created = service.api("POST", "/clusters", cluster(target, {"workers": 2}, duration_s=60))
    cluster_id = created["id"]
    service.wait_status(cluster_id, ("running",), timeout_s=120)
    time.sleep(1.0)
    assert service.api("POST", f"/clusters/{cluster_id}/stop")[0] == 202
    view = service.wait_status(cluster_id, timeout_s=60)
    assert view["status"] == "cancelled"
    assert {w["state"] for w in view["workers"]} == {"cancelled"}
    job_id = _job_id(service, cluster_id)
    assert view["spawner_state"]["job_id"] == job_id
    # scancel and the heartbeat reply that says stop_all race: a worker that heard the reply
    # first ends on its own (COMPLETED) just before Slurm cancels the rest. None runs on.
    ended = {"CANCELLED", "COMPLETED"}
    deadline = time.monotonic() + 30
    while not set(squeue_states(slurm_cluster, job_id)) <= ended and time.monotonic() < deadline:
        time.sleep(0.5)
    states = squeue_states(slurm_cluster, job_id)
    assert set(states) <= ended, states


def test_a_job_that_fails_at_start_is_reported_with_its_output(
    service: ServiceProcess, slurm_cluster: Any, target: str
) -> None:
    slurm = {"workers": 2}
    _, created = service.api("POST", "/clusters", cluster(target, slurm, preset="broken-setup"))
    view = service.wait_status(created["id"], timeout_s=120)
    assert view["status"] == "failed"
    for worker in view["workers"]:
        assert worker["state"] == "failed"
        assert "FAILED" in worker["error"]
        assert "loading the python module" in worker["error"]


def test_a_task_cancelled_outside_the_service_is_seen_as_cancelled(
    service: ServiceProcess, slurm_cluster: Any, target: str
) -> None:
    _, created = service.api("POST", "/clusters", cluster(target, {"workers": 2}, duration_s=6))
    cluster_id = created["id"]
    service.wait_status(cluster_id, ("running",), timeout_s=120)
    job_id = _job_id(service, cluster_id)
    slurm_cluster.run("scancel", f"{job_id}_1")
    view = service.wait_status(cluster_id, timeout_s=60)
    assert view["status"] == "completed"
    assert [w["state"] for w in view["workers"]] == ["completed", "cancelled"]
    assert "CANCELLED" in view["workers"][1]["error"]


def test_a_restarted_service_reattaches_to_its_array(
    tmp_path: Path, slurm_cluster: Any, target: str
) -> None:
    svc = slurm_service(tmp_path, lost_after_s=10).start()
    _, created = svc.api("POST", "/clusters", cluster(target, {"workers": 2}, duration_s=5))
    cluster_id = created["id"]
    svc.wait_status(cluster_id, ("running",), timeout_s=120)
    svc.stop(signal.SIGKILL)
    svc = slurm_service(tmp_path, lost_after_s=10, port=svc.port).start()
    try:
        view = svc.wait_status(cluster_id, timeout_s=60)
        assert view["status"] == "completed"
        _, results = svc.api("GET", f"/clusters/{cluster_id}/results")
        assert results["groups"]["hello"]["requests"] == 200
    finally:
        svc.stop()


def _job_id(service: ServiceProcess, cluster_id: str) -> str:
    _, events = service.api("GET", f"/clusters/{cluster_id}/events")
    submitted = [e for e in events if e["kind"] == "submitted"]
    assert submitted, events
    return str(submitted[0]["data"]["job_id"])
