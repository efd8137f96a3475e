"""Slurm job states as worker states, and parsing what squeue, scontrol and slurmrestd report.

Everything here is pure. One array task is one worker; tasks are keyed on
``(array_job_id, array_task_id)`` because the last task of an array reuses the array's job id.
A pending array may still be one record whose ``array_task_string`` (``"0-3"``, ``"[2-3]"``,
``"1,3,5-7%2"``) covers many tasks: it is expanded to one status per task.

Shapes accepted (``squeue --json`` and ``GET /slurm/<ver>/job/<id>`` print the same records):

* Slurm 22.05 / openapi v0.0.38: ``job_state`` a string, ``array_task_id`` an int or null,
  ``exit_code`` the raw wait status as an int (``256`` is ``1:0``, ``15`` is ``0:15``).
* Slurm 23.02+ / v0.0.39+: ``job_state`` a list of a base state and flags, numbers as
  ``{"set": true, "number": 2}``, ``exit_code`` as ``{"status", "return_code", "signal"}``.
* ``scontrol -o show job``: one line of ``Key=Value`` per record, ``ExitCode=N:M``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

WorkerState = Literal["pending", "running", "completed", "failed", "cancelled"]

_NO_VAL = 0xFFFFFFFE  # Slurm's "not set" for 32-bit numbers; exit code of a job not yet run

PENDING_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESV_DEL_HOLD",
        "POWER_UP_NODE",
    }
)
RUNNING_STATES = frozenset(
    {
        "RUNNING",
        "COMPLETING",
        "STAGE_OUT",
        "SIGNALING",
        "SUSPENDED",
        "STOPPED",
        "RESIZING",
        "UPDATE_DB",
    }
)
FAILED_STATES = frozenset(
    {
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "TIMEOUT",
        "PREEMPTED",
        "SPECIAL_EXIT",
        "LAUNCH_FAILED",
        "RECONFIG_FAIL",
        "REVOKED",
    }
)
_BASE_STATES = frozenset(
    {"PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"}
    | {"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY"}
)


def worker_state(slurm_state: str) -> WorkerState:
    """The worker state of a Slurm job state (``"CANCELLED by 0"`` counts as ``CANCELLED``).

    A state this table does not know counts as ``running``: the job has not visibly ended,
    and a worker that is gone all the same is caught by the service's heartbeat check.
    """
    words = slurm_state.strip().upper().split()
    state = words[0].rstrip("+") if words else ""  # sacct prints a cut-off name with "+"
    if state in ("COMPLETED", "COMPLETE"):
        return "completed"
    if state == "CANCELLED":
        return "cancelled"
    if state in FAILED_STATES:
        return "failed"
    if state in PENDING_STATES:
        return "pending"
    return "running"


def is_ended(state: WorkerState) -> bool:
    """Whether a worker in ``state`` has ended for good."""
    return state in ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class ExitStatus:
    """How a job's batch script ended: exit code and terminating signal, as Slurm's ``N:M``."""

    code: int
    signal: int = 0

    @property
    def text(self) -> str:
        """Slurm's notation, e.g. ``1:0`` or ``0:15``."""
        return f"{self.code}:{self.signal}"

    @property
    def worker_code(self) -> int:
        """The exit code as a process return code: ``-signal`` when killed by a signal."""
        return -self.signal if self.signal and not self.code else self.code


def _number(value: Any) -> int | None:
    """An int from ``5``, ``"5"`` or ``{"set": true, "number": 5}``; None when unset."""
    if isinstance(value, Mapping):
        if not value.get("set", True) or value.get("infinite", False):
            return None
        value = value.get("number")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def parse_exit_code(value: Any) -> ExitStatus | None:
    """An exit status from any shape Slurm prints; None for a job that has not ended.

    ``"1:0"`` (scontrol, squeue text), ``256`` (a raw wait status, openapi v0.0.38) or
    ``{"status": "SIGNALED", "return_code": 0, "signal": {"id": 15}}`` (v0.0.39+).
    """
    if isinstance(value, Mapping):
        status = value.get("status")
        if isinstance(status, list):
            status = status[0] if status else ""
        if str(status or "").upper() in ("PENDING", "UNKNOWN"):
            return None
        code = _number(value.get("return_code")) or 0
        signal_info = value.get("signal")
        signal = _number(signal_info.get("id")) if isinstance(signal_info, Mapping) else None
        return ExitStatus(code, signal or 0)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+):(\d+)\s*", value)
        if match:
            return ExitStatus(int(match.group(1)), int(match.group(2)))
        value = _number(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value < 0 or value >= _NO_VAL:
        return None
    if value & 0x7F:  # killed by a signal (WIFSIGNALED)
        return ExitStatus(0, value & 0x7F)
    return ExitStatus((value >> 8) & 0xFF, 0)


def expand_task_ids(text: str) -> list[int]:
    """The task indices of an array expression: ``"0-3"``, ``"[2-3]"``, ``"1,5-9:2%4"``."""
    body = text.strip().strip("[]").split("%", 1)[0]
    indices: list[int] = []
    for part in filter(None, (p.strip() for p in body.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if match is None:
            raise ValueError(f"not a Slurm array task expression: {text!r}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        step = int(match.group(3)) if match.group(3) else 1
        indices.extend(range(first, last + 1, max(step, 1)))
    return indices


@dataclass(frozen=True)
class TaskStatus:
    """One array task as Slurm reports it."""

    array_job_id: str
    index: int
    slurm_state: str
    reason: str = ""
    exit: ExitStatus | None = None

    @property
    def state(self) -> WorkerState:
        """The worker state of this task."""
        return worker_state(self.slurm_state)

    @property
    def ended(self) -> bool:
        """Whether this task has ended for good."""
        return is_ended(self.state)

    @property
    def label(self) -> str:
        """Slurm's name of the task, e.g. ``123_2``."""
        return f"{self.array_job_id}_{self.index}"

    def describe(self) -> str:
        """E.g. ``Slurm job 123_2 FAILED (NonZeroExitCode), exit code 1:0``."""
        text = f"Slurm job {self.label} {self.slurm_state}"
        if self.reason and self.reason != "None":
            text += f" ({self.reason})"
        if self.exit is not None:
            text += f", exit code {self.exit.text}"
        return text


def _base_state(value: Any) -> str:
    """The base state of ``"FAILED"`` or ``["CANCELLED", "COMPLETING"]`` (flags dropped)."""
    if isinstance(value, list):
        names = [str(v).upper() for v in value]
        base = [n for n in names if n in _BASE_STATES]
        return base[0] if base else (names[0] if names else "UNKNOWN")
    return str(value or "UNKNOWN").strip().upper().split()[0] if value else "UNKNOWN"


def in_array(record: Mapping[str, Any], array_job_id: str) -> bool:
    """Whether a job record is (a task of) job array ``array_job_id``."""
    array_id = _number(record.get("array_job_id"))
    if array_id:
        return str(array_id) == array_job_id
    return str(_number(record.get("job_id"))) == array_job_id


def _record_tasks(record: Mapping[str, Any], array_job_id: str) -> list[TaskStatus]:
    """The tasks of one job record that belong to array ``array_job_id``."""
    if not in_array(record, array_job_id):
        return []
    state = _base_state(record.get("job_state"))
    reason = str(record.get("state_reason") or "")
    exit_status = parse_exit_code(record.get("exit_code"))
    task_id = _number(record.get("array_task_id"))
    if task_id is not None:
        indices = [task_id]
    else:
        spread = str(record.get("array_task_string") or "")
        indices = expand_task_ids(spread) if spread else []
    return [TaskStatus(array_job_id, i, state, reason, exit_status) for i in indices]


def tasks_from_records(
    records: Iterable[Mapping[str, Any]], array_job_id: str
) -> dict[int, TaskStatus]:
    """Task statuses by index; a record of one task wins over a pending range covering it."""
    singles: dict[int, TaskStatus] = {}
    ranges: dict[int, TaskStatus] = {}
    for record in records:
        one = _number(record.get("array_task_id")) is not None
        for task in _record_tasks(record, array_job_id):
            (singles if one else ranges)[task.index] = task
    return {**ranges, **singles}


def parse_jobs_json(
    data: str | bytes | Mapping[str, Any], array_job_id: str
) -> dict[int, TaskStatus]:
    """Tasks of ``array_job_id`` in ``squeue --json`` output or a slurmrestd ``jobs`` reply."""
    document = json.loads(data) if isinstance(data, (str, bytes)) else data
    jobs = document.get("jobs") if isinstance(document, Mapping) else None
    if not isinstance(jobs, list):
        raise ValueError("no 'jobs' list in the reply")
    return tasks_from_records((j for j in jobs if isinstance(j, Mapping)), array_job_id)


_FIELD = re.compile(r"(\w+)=(\S*)")


def parse_scontrol(text: str, array_job_id: str) -> dict[int, TaskStatus]:
    """Tasks of ``array_job_id`` in ``scontrol -o show job`` output (one record per line)."""
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        fields: dict[str, str] = {}
        for key, value in _FIELD.findall(line):  # the first wins: later values hold paths
            fields.setdefault(key, value)
        if "JobId" not in fields:
            continue
        task = fields.get("ArrayTaskId", "")
        single = task.isdigit()
        records.append(
            {
                "job_id": fields["JobId"],
                "array_job_id": fields.get("ArrayJobId", "0"),
                "array_task_id": int(task) if single else None,
                "array_task_string": "" if single else task,
                "job_state": fields.get("JobState", "UNKNOWN"),
                "state_reason": fields.get("Reason", ""),
                "exit_code": fields.get("ExitCode"),
            }
        )
    return tasks_from_records(records, array_job_id)


@dataclass(frozen=True)
class TaskEnd:
    """A worker whose array task has ended, as the spawner reports it."""

    index: int
    exit_code: int | None
    reason: str
    cancelled: bool = False


def ended_tasks(tasks: Mapping[int, TaskStatus], job_id: str, workers: int) -> list[TaskEnd]:
    """The workers of array ``job_id`` (``workers`` tasks) whose task has ended.

    A task Slurm no longer lists (the whole job when ``tasks`` is empty) counts as ended: it
    finished longer ago than ``MinJobAge`` or was purged.
    """
    ends: list[TaskEnd] = []
    for index in range(workers):
        task = tasks.get(index)
        if task is None:
            what = f"job {job_id}" if not tasks else f"job {job_id}_{index}"
            ends.append(TaskEnd(index, None, f"Slurm no longer knows {what}"))
        elif task.ended:
            code = task.exit.worker_code if task.exit is not None else None
            ends.append(TaskEnd(index, code, task.describe(), task.state == "cancelled"))
    return ends
