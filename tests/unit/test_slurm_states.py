"""Slurm states as worker states, and parsing squeue, scontrol and slurmrestd output (pure)."""

from __future__ import annotations

import json

import pytest

from clientswarm.errors import SpawnerError
from clientswarm.spawners.slurm.cli import parse_parsable
from clientswarm.spawners.slurm.rest import reply_errors
from clientswarm.spawners.slurm.states import (
    ExitStatus,
    TaskEnd,
    TaskStatus,
    ended_tasks,
    expand_task_ids,
    parse_exit_code,
    parse_jobs_json,
    parse_scontrol,
    worker_state,
)


@pytest.mark.parametrize(
    ("slurm", "worker"),
    [
        ("PENDING", "pending"),
        ("CONFIGURING", "pending"),
        ("REQUEUED", "pending"),
        ("REQUEUE_FED", "pending"),
        ("REQUEUE_HOLD", "pending"),
        ("RESV_DEL_HOLD", "pending"),
        ("POWER_UP_NODE", "pending"),
        ("RUNNING", "running"),
        ("COMPLETING", "running"),
        ("STAGE_OUT", "running"),
        ("SIGNALING", "running"),
        ("SUSPENDED", "running"),
        ("STOPPED", "running"),
        ("RESIZING", "running"),
        ("UPDATE_DB", "running"),
        ("COMPLETED", "completed"),
        ("FAILED", "failed"),
        ("NODE_FAIL", "failed"),
        ("OUT_OF_MEMORY", "failed"),
        ("BOOT_FAIL", "failed"),
        ("DEADLINE", "failed"),
        ("TIMEOUT", "failed"),
        ("PREEMPTED", "failed"),
        ("SPECIAL_EXIT", "failed"),
        ("LAUNCH_FAILED", "failed"),
        ("RECONFIG_FAIL", "failed"),
        ("REVOKED", "failed"),
        ("CANCELLED", "cancelled"),
        ("CANCELLED by 0", "cancelled"),
        ("CANCELLED+", "cancelled"),  # a name cut off to fit a column
        ("SOMETHING_NEW", "running"),  # unknown: not ended; the heartbeat check decides
    ],
)
def test_every_slurm_state_maps_to_a_worker_state(slurm: str, worker: str) -> None:
    assert worker_state(slurm) == worker


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0:0", ExitStatus(0, 0)),
        ("1:0", ExitStatus(1, 0)),
        ("0:15", ExitStatus(0, 15)),
        (0, ExitStatus(0, 0)),
        (256, ExitStatus(1, 0)),  # v0.0.38: the raw wait status
        (15, ExitStatus(0, 15)),
        (9, ExitStatus(0, 9)),
        (4294967294, None),  # NO_VAL: not run yet
        (None, None),
        ("", None),
        (
            {"status": "EXITED", "return_code": {"set": True, "number": 3}, "signal": {}},
            ExitStatus(3, 0),
        ),
        (
            {
                "status": "SIGNALED",
                "return_code": {"set": True, "number": 0},
                "signal": {"id": {"set": True, "number": 15}, "name": "TERM"},
            },
            ExitStatus(0, 15),
        ),
        ({"status": "PENDING"}, None),
    ],
)
def test_exit_codes_in_every_shape(value: object, expected: ExitStatus | None) -> None:
    assert parse_exit_code(value) == expected


def test_exit_status_as_text_and_as_a_process_return_code() -> None:
    assert ExitStatus(1, 0).text == "1:0"
    assert ExitStatus(1, 0).worker_code == 1
    assert ExitStatus(0, 15).text == "0:15"
    assert ExitStatus(0, 15).worker_code == -15
    assert ExitStatus(0, 0).worker_code == 0


@pytest.mark.parametrize(
    ("text", "indices"),
    [
        ("7", [7]),
        ("0-3", [0, 1, 2, 3]),
        ("[2-3]", [2, 3]),
        ("1,3,5-7", [1, 3, 5, 6, 7]),
        ("0-15:4", [0, 4, 8, 12]),
        ("0-3%2", [0, 1, 2, 3]),
        ("[4-5%1]", [4, 5]),
    ],
)
def test_array_task_expressions_expand(text: str, indices: list[int]) -> None:
    assert expand_task_ids(text) == indices


def test_a_bad_task_expression_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a Slurm array task expression"):
        expand_task_ids("a-b")


def record(**fields: object) -> dict[str, object]:
    """A job record of squeue --json on Slurm 22.05 (openapi v0.0.38), trimmed to what matters."""
    base: dict[str, object] = {
        "account": "",
        "array_job_id": 100,
        "array_task_id": None,
        "array_max_tasks": 0,
        "array_task_string": "",
        "batch_flag": True,
        "derived_exit_code": 0,
        "exit_code": 0,
        "job_id": 100,
        "job_state": "PENDING",
        "name": "clientswarm-abc123",
        "partition": "debug",
        "state_description": "",
        "state_reason": "None",
        "standard_output": "/logs/worker-%a.log",
        "user_name": "root",
    }
    base.update(fields)
    return base


# squeue --json -t all --jobs=100 on Slurm 22.05 (hand-written after its jobs.c; trimmed).
SQUEUE_22_05 = {
    "meta": {
        "plugin": {"type": "openapi/v0.0.38", "name": "Slurm OpenAPI v0.0.38"},
        "Slurm": {"version": {"major": 22, "micro": 8, "minor": 5}, "release": "22.05.8"},
    },
    "errors": [],
    "jobs": [
        record(job_id=101, array_task_id=0, job_state="COMPLETED", exit_code=0),
        record(
            job_id=102,
            array_task_id=1,
            job_state="FAILED",
            state_reason="NonZeroExitCode",
            exit_code=256,
        ),
        record(job_id=103, array_task_id=2, job_state="CANCELLED", exit_code=15),
        record(job_id=104, array_task_id=3, job_state="RUNNING", exit_code=4294967294),
        record(job_id=105, array_task_id=4, job_state="TIMEOUT", exit_code=15),
        # the pending rest of the array, one record; the last task will reuse the id 100
        record(job_id=100, array_task_string="5-6", job_state="PENDING", state_reason="Priority"),
        # somebody else's jobs, listed when squeue --json ignores --jobs
        record(job_id=99, array_job_id=0, array_task_string="", job_state="RUNNING"),
        record(job_id=201, array_job_id=200, array_task_id=0, job_state="FAILED"),
    ],
}


def test_squeue_json_of_slurm_22_05_gives_one_status_per_task() -> None:
    tasks = parse_jobs_json(json.dumps(SQUEUE_22_05), "100")
    assert sorted(tasks) == [0, 1, 2, 3, 4, 5, 6]
    assert tasks[0] == TaskStatus("100", 0, "COMPLETED", "None", ExitStatus(0, 0))
    assert tasks[1].state == "failed"
    assert tasks[1].describe() == "Slurm job 100_1 FAILED (NonZeroExitCode), exit code 1:0"
    assert tasks[2].state == "cancelled" and tasks[2].exit == ExitStatus(0, 15)
    assert tasks[3].state == "running" and tasks[3].exit is None
    assert tasks[4].describe() == "Slurm job 100_4 TIMEOUT, exit code 0:15"
    assert tasks[5] == TaskStatus("100", 5, "PENDING", "Priority", ExitStatus(0, 0))
    assert tasks[6].state == "pending"


def test_the_last_task_reuses_the_arrays_job_id() -> None:
    jobs = {
        "jobs": [
            record(job_id=101, array_task_id=0, job_state="COMPLETED"),
            record(job_id=100, array_task_id=1, job_state="RUNNING"),
        ]
    }
    tasks = parse_jobs_json(jobs, "100")
    assert {i: t.slurm_state for i, t in tasks.items()} == {0: "COMPLETED", 1: "RUNNING"}


def test_a_task_record_wins_over_a_pending_range_that_still_covers_it() -> None:
    jobs = {
        "jobs": [
            record(job_id=100, array_task_string="0-3"),
            record(job_id=101, array_task_id=0, job_state="RUNNING"),
        ]
    }
    tasks = parse_jobs_json(jobs, "100")
    assert tasks[0].slurm_state == "RUNNING"
    assert [tasks[i].slurm_state for i in (1, 2, 3)] == ["PENDING"] * 3


def test_squeue_json_of_newer_slurm_with_numbers_and_state_lists() -> None:
    def number(n: int) -> dict[str, object]:
        return {"set": True, "infinite": False, "number": n}

    jobs = {
        "jobs": [
            {
                "job_id": number(301),
                "array_job_id": number(300),
                "array_task_id": number(0),
                "job_state": ["CANCELLED"],
                "state_reason": "None",
                "exit_code": {
                    "status": ["SIGNALED"],
                    "return_code": number(0),
                    "signal": {"id": number(15), "name": "TERM"},
                },
            },
            {
                "job_id": number(300),
                "array_job_id": number(300),
                "array_task_id": {"set": False, "infinite": False, "number": 0},
                "array_task_string": "1-2",
                "job_state": ["PENDING"],
                "state_reason": "Resources",
                "exit_code": {"status": ["PENDING"], "return_code": number(0)},
            },
        ]
    }
    tasks = parse_jobs_json(jobs, "300")
    assert tasks[0].state == "cancelled" and tasks[0].exit == ExitStatus(0, 15)
    assert tasks[1].slurm_state == "PENDING" and tasks[2].reason == "Resources"
    assert tasks[1].exit is None


def test_a_reply_without_jobs_is_an_error_and_an_empty_list_means_unknown() -> None:
    with pytest.raises(ValueError, match="no 'jobs' list"):
        parse_jobs_json("{}", "100")
    assert parse_jobs_json('{"jobs": []}', "100") == {}


SCONTROL = (
    "JobId=101 ArrayJobId=100 ArrayTaskId=0 JobName=clientswarm-abc123 UserId=root(0) "
    "Priority=1 JobState=COMPLETED Reason=None Dependency=(null) ExitCode=0:0 "
    "StdOut=/logs/worker-0.log\n"
    "JobId=102 ArrayJobId=100 ArrayTaskId=1 JobName=clientswarm-abc123 UserId=root(0) "
    "JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0\n"
    "JobId=100 ArrayJobId=100 ArrayTaskId=2-3 JobName=clientswarm-abc123 UserId=root(0) "
    "JobState=PENDING Reason=Resources Dependency=(null) ExitCode=0:0\n"
)


def test_scontrol_one_liners_parse_like_squeue_json() -> None:
    tasks = parse_scontrol(SCONTROL, "100")
    assert sorted(tasks) == [0, 1, 2, 3]
    assert tasks[0].state == "completed"
    assert tasks[1].describe() == "Slurm job 100_1 FAILED (NonZeroExitCode), exit code 3:0"
    assert tasks[3].slurm_state == "PENDING" and tasks[3].reason == "Resources"
    assert parse_scontrol("", "100") == {}


def test_ended_tasks_report_only_what_has_ended_with_the_reason() -> None:
    tasks = parse_jobs_json(SQUEUE_22_05, "100")
    ends = ended_tasks(tasks, "100", workers=8)
    assert ends == [
        TaskEnd(0, 0, "Slurm job 100_0 COMPLETED, exit code 0:0"),
        TaskEnd(1, 1, "Slurm job 100_1 FAILED (NonZeroExitCode), exit code 1:0"),
        TaskEnd(2, -15, "Slurm job 100_2 CANCELLED, exit code 0:15", cancelled=True),
        TaskEnd(4, -15, "Slurm job 100_4 TIMEOUT, exit code 0:15"),
        TaskEnd(7, None, "Slurm no longer knows job 100_7"),
    ]


def test_a_job_slurm_no_longer_knows_ends_every_worker() -> None:
    assert ended_tasks({}, "100", workers=2) == [
        TaskEnd(0, None, "Slurm no longer knows job 100"),
        TaskEnd(1, None, "Slurm no longer knows job 100"),
    ]


def test_sbatch_parsable_output() -> None:
    assert parse_parsable("123\n") == "123"
    assert parse_parsable("123;cluster-a\n") == "123"
    with pytest.raises(SpawnerError, match="no job id"):
        parse_parsable("sbatch: error: Batch job submission failed\n")


def test_slurmrestd_error_lists_in_both_generations() -> None:
    v38 = {"errors": [{"error": "Unable to find JobId=5", "error_code": 2017}]}
    assert reply_errors(v38) == [(2017, "Unable to find JobId=5")]
    v40 = {
        "errors": [
            {
                "description": "environment must be set",
                "error_number": 9001,
                "error": "Invalid environment",
                "source": "job_submit",
            }
        ]
    }
    assert reply_errors(v40) == [(9001, "Invalid environment: environment must be set: job_submit")]
    assert reply_errors({"errors": []}) == []
