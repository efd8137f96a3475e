"""The single-node Slurm dev cluster works: arrays, cancel, squeue --json, slurmrestd."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slurm_cluster import SlurmCluster


def test_cli_job_array_runs_every_task(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.scratch_dir("array-")
    job = slurm_cluster.sbatch(
        "--array=0-3",
        "--job-name=cs-test-array",
        f"--output={out}/task-%a.out",
        f"--chdir={out}",
        "--wrap",
        "echo $SLURM_ARRAY_TASK_ID",
    )
    assert slurm_cluster.wait_tasks(job, timeout=30) == {i: "COMPLETED" for i in range(4)}
    for i in range(4):
        assert (out / f"task-{i}.out").read_text().strip() == str(i)

    # squeue --json: one record per task, keyed on (array_job_id, array_task_id).
    tasks = {
        (j["array_job_id"], j["array_task_id"]): j
        for j in slurm_cluster.squeue_json()
        if j["array_job_id"] == job
    }
    assert sorted(tasks) == [(job, i) for i in range(4)]
    for rec in tasks.values():
        assert rec["job_state"] == "COMPLETED"
        assert rec["exit_code"] == 0
        assert rec["state_reason"] == "None"
        assert rec["name"] == "cs-test-array"
        assert rec["partition"] == slurm_cluster.partition
    # The last task reuses the array's job id.
    assert tasks[(job, 3)]["job_id"] == job


def test_scancel_shows_cancelled(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--output=/dev/null", "--wrap", "sleep 300")
    deadline = time.monotonic() + 20
    while slurm_cluster.task_states(job).get(None) != "RUNNING":
        assert time.monotonic() < deadline, slurm_cluster.task_states(job)
        time.sleep(0.1)
    slurm_cluster.run("scancel", str(job), check=True)
    assert slurm_cluster.wait_job(job, timeout=20) == "CANCELLED"
    rec = next(j for j in slurm_cluster.squeue_json() if j["job_id"] == job)
    assert rec["job_state"] == "CANCELLED"
    assert rec["exit_code"] == 15  # a raw wait status: killed by SIGTERM ("0:15")
    assert rec["array_job_id"] == 0
    assert rec["array_task_id"] is None


def test_failed_job_reports_reason_and_wait_status(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--output=/dev/null", "--wrap", "exit 3")
    assert slurm_cluster.wait_job(job, timeout=20) == "FAILED"
    rec = next(j for j in slurm_cluster.squeue_json() if j["job_id"] == job)
    assert rec["state_reason"] == "NonZeroExitCode"
    assert rec["exit_code"] == 3 << 8  # a raw wait status: exit code 3 ("3:0")


def test_session_environment_points_at_the_cluster(slurm_cluster: SlurmCluster) -> None:
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf)
    assert slurm_cluster.conf.is_file()


def test_rest_get_diag(slurm_cluster: SlurmCluster) -> None:
    status, body = slurm_cluster.rest("GET", "/diag")
    assert status == 200, body
    assert body["errors"] == []
    assert body["meta"]["plugin"]["type"] == "openapi/v0.0.38"
    assert "statistics" in body
    status, body = slurm_cluster.rest("GET", "/ping")
    assert status == 200
    assert body["pings"][0]["ping"] == "UP"


def test_rest_submit_array(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.scratch_dir("rest-")
    body = {
        "script": "#!/bin/sh\necho task $SLURM_ARRAY_TASK_ID $CS_TEST_VALUE $(id -un)\n",
        "job": {
            "name": "cs-test-rest",
            "partition": slurm_cluster.partition,
            "array": "0-1",
            "current_working_directory": str(out),
            "standard_output": f"{out}/task-%a.out",
            # v0.0.38 wants a dictionary here (a list is refused: "environment must be a
            # dictionary"), and refuses a job without it ("environment must be set").
            "environment": {"PATH": "/usr/bin:/bin", "CS_TEST_VALUE": "42"},
        },
    }
    status, reply = slurm_cluster.rest("POST", "/job/submit", body)
    assert status == 200, reply
    assert reply["errors"] == [], reply
    job = reply["job_id"]
    assert isinstance(job, int)
    assert slurm_cluster.wait_tasks(job, timeout=30) == {0: "COMPLETED", 1: "COMPLETED"}
    for i in range(2):
        text = (out / f"task-{i}.out").read_text().strip()
        assert text == f"task {i} 42 {slurm_cluster.rest_user}"

    # The same jobs through the REST API: GET /job/{id} lists every task of the array.
    status, reply = slurm_cluster.rest("GET", f"/job/{job}")
    assert status == 200, reply
    tasks = {(j["array_job_id"], j["array_task_id"]): j["job_state"] for j in reply["jobs"]}
    assert tasks == {(job, 0): "COMPLETED", (job, 1): "COMPLETED"}


def test_rest_cancel(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.scratch_dir("rest-cancel-")
    body = {
        "script": "#!/bin/sh\nsleep 300\n",
        "job": {
            "name": "cs-test-rest-cancel",
            "array": "0-1",
            "current_working_directory": str(out),
            "standard_output": "/dev/null",
            "environment": {"PATH": "/usr/bin:/bin"},
        },
    }
    status, reply = slurm_cluster.rest("POST", "/job/submit", body)
    assert status == 200, reply
    job = reply["job_id"]
    status, reply = slurm_cluster.rest("DELETE", f"/job/{job}")
    assert status == 200, reply
    assert slurm_cluster.wait_job(job, timeout=20) == "CANCELLED"
