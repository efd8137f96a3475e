"""Pods and Job conditions as worker ends (pure), on objects shaped as the API returns them."""

from __future__ import annotations

from typing import Any

from clientswarm.spawners.kubernetes.states import (
    ended_workers,
    job_failure,
    job_finished,
    pod_index,
)

JOB = "clientswarm-abc123"


def pod(
    index: int,
    phase: str,
    *,
    state: dict[str, Any] | None = None,
    created: str = "2026-11-26T13:00:00Z",
    suffix: str = "x1y2z",
    **status: Any,
) -> dict[str, Any]:
    name = f"{JOB}-{index}-{suffix}"
    container = {"name": "worker", "ready": phase == "Running", "restartCount": 0}
    if state is not None:
        container["state"] = state
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"batch.kubernetes.io/job-completion-index": str(index)},
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {"phase": phase, "containerStatuses": [container], **status},
    }


def terminated(exit_code: int, reason: str = "Error", **extra: Any) -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "reason": reason, **extra}}


def job(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB, "uid": "u-1"},
        "status": {
            "conditions": [
                {"type": kind, "status": "True", "reason": reason, "message": message}
                for kind, reason, message in conditions
            ]
        },
    }


RUNNING = {"running": {"startedAt": "2026-11-26T13:00:01Z"}}


def test_the_index_comes_from_the_label_or_else_the_annotation() -> None:
    labelled = pod(3, "Running")
    assert pod_index(labelled) == 3
    del labelled["metadata"]["labels"]
    assert pod_index(labelled) == 3
    del labelled["metadata"]["annotations"]
    assert pod_index(labelled) is None


def test_running_and_pending_pods_have_not_ended() -> None:
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    pulling = {"waiting": {"reason": "ErrImagePull", "message": "pull failed once"}}
    pods = [pod(0, "Running", state=RUNNING), pod(1, "Pending", state=waiting)]
    assert ended_workers(job(), [*pods, pod(2, "Pending", state=pulling)], 3) == {}


def test_a_succeeded_pod_completes_its_worker() -> None:
    ends = ended_workers(job(), [pod(0, "Succeeded", state=terminated(0, "Completed"))], 1)
    assert ends[0].exit_code == 0
    assert ends[0].reason == f"pod {JOB}-0-x1y2z completed"
    assert not ends[0].cancelled


def test_a_failed_pod_says_its_exit_code_and_has_a_log() -> None:
    ends = ended_workers(job(), [pod(1, "Failed", state=terminated(2))], 2)
    assert list(ends) == [1]
    assert ends[1].exit_code == 2
    assert ends[1].reason == f"pod {JOB}-1-x1y2z failed (exit code 2)"
    assert ends[1].started and ends[1].pod == f"{JOB}-1-x1y2z"


def test_oomkilled_says_to_raise_the_memory_limit() -> None:
    ends = ended_workers(job(), [pod(0, "Failed", state=terminated(137, "OOMKilled"))], 1)
    assert ends[0].exit_code == 137
    assert "was OOMKilled (exit code 137)" in ends[0].reason
    assert "spawner.resources.limits.memory" in ends[0].reason


def test_an_evicted_pod_gives_the_kubelets_message() -> None:
    evicted = pod(
        0,
        "Failed",
        state=terminated(137),
        reason="Evicted",
        message="The node was low on resource: memory. ",
    )
    ends = ended_workers(job(), [evicted], 1)
    assert ends[0].reason == f"pod {JOB}-0-x1y2z was evicted: The node was low on resource: memory."
    assert not ends[0].cancelled


def test_image_pull_backoff_and_config_errors_end_the_worker_before_it_starts() -> None:
    backoff = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}
    config = {
        "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "k" not found'}
    }
    pods = [pod(0, "Pending", state=backoff), pod(1, "Pending", state=config)]
    ends = ended_workers(job(), pods, 2)
    assert (
        ends[0].reason
        == f'pod {JOB}-0-x1y2z cannot start: ImagePullBackOff: Back-off pulling image "x"'
    )
    assert ends[1].reason == (
        f'pod {JOB}-1-x1y2z cannot start: CreateContainerConfigError: secret "k" not found'
    )
    assert ends[0].exit_code is None and not ends[0].started


def test_the_newest_pod_of_an_index_decides() -> None:
    old = pod(0, "Failed", state=terminated(1), created="2026-11-26T13:00:00Z", suffix="aaaaa")
    new = pod(0, "Running", state=RUNNING, created="2026-11-26T13:00:05Z", suffix="bbbbb")
    assert ended_workers(job(), [new, old], 1) == {}


def test_a_deadline_ends_the_workers_whose_pods_the_controller_removed() -> None:
    failed = job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"))
    assert job_failure(failed) == (
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )
    assert job_finished(failed)
    killed = pod(0, "Failed", state=terminated(143))
    killed["metadata"]["deletionTimestamp"] = "2026-11-26T13:01:00Z"
    ends = ended_workers(failed, [killed], 2)
    assert ends[0].reason == (
        f"pod {JOB}-0-x1y2z failed (exit code 143) (the Job failed: DeadlineExceeded: "
        "Job was active longer than specified deadline)"
    )
    assert not ends[0].cancelled  # the deadline is a failure, not a stop
    assert ends[1].reason == (
        "the Job failed: DeadlineExceeded: Job was active longer than specified deadline"
    )


def test_a_pod_still_running_in_a_failed_job_gets_to_finish() -> None:
    failed = job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"))
    assert ended_workers(failed, [pod(0, "Running", state=RUNNING)], 1) == {}


def test_a_deleted_pod_that_failed_was_cancelled() -> None:
    killed = pod(0, "Failed", state=terminated(143))
    killed["metadata"]["deletionTimestamp"] = "2026-11-26T13:01:00Z"
    assert ended_workers(job(), [killed], 1)[0].cancelled


def test_a_job_that_is_gone_cancels_the_workers_without_a_finished_pod() -> None:
    done = pod(0, "Succeeded", state=terminated(0, "Completed"))
    ends = ended_workers(None, [done], 3)
    assert ends[0].exit_code == 0 and not ends[0].cancelled
    assert [ends[i].cancelled for i in (1, 2)] == [True, True]
    assert ends[1].reason == "its Job was deleted"


def test_completed_jobs_are_finished_and_pods_of_other_indexes_are_ignored() -> None:
    complete = job(("Complete", "CompletionsReached", "Reached expected number"))
    assert job_finished(complete) and job_failure(complete) is None
    stray = pod(7, "Failed", state=terminated(1))
    assert ended_workers(complete, [stray], 2) == {}
