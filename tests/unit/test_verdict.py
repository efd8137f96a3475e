"""Exit codes and verdicts from summary documents, results directories, run metadata."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from clientswarm.errors import ConfigError
from clientswarm.metrics.summary import ClusterInfo
from clientswarm.outputs import (
    check_output_file,
    earlier_run_files,
    new_run_dir,
    prepare_run_dir,
)
from clientswarm.service.runinfo import config_sha256, public_url
from clientswarm.timestamps import epoch_s, rfc3339
from clientswarm.verdict import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_THRESHOLDS,
    exit_code,
    launch_failure,
    verdict,
)


def summary(status: str, *, requests: int = 10, **extra: Any) -> dict[str, Any]:
    """A hand-made summary document: only what the verdict reads."""
    total = {"requests": requests, "warmup_excluded": 0, "cancelled_excluded": 0}
    return {
        "cluster": {"status": status, "reason": extra.pop("reason", None)},
        "total": total,
        **extra,
    }


def threshold(expr: str, value: float | None, passed: bool | None) -> dict[str, Any]:
    return {"scope": "total", "expr": expr, "value": value, "passed": passed}


HELD = threshold("ttft_s.p99 < 0.5", 0.12, True)
BROKEN = threshold("error_rate < 0.01", 0.25, False)


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (summary("completed"), EXIT_OK),
        (summary("completed", thresholds=[]), EXIT_OK),
        (summary("completed", thresholds=[HELD]), EXIT_OK),
        (summary("completed", thresholds=[HELD, BROKEN]), EXIT_THRESHOLDS),
        # a threshold that could not be measured did not hold
        (summary("completed", thresholds=[threshold("ttft_s.p99 < 0.5", None, None)]), 3),
        (summary("failed", reason="boom", thresholds=[HELD]), EXIT_FAILED),
        (summary("failed", thresholds=[BROKEN]), EXIT_FAILED),  # failed outranks thresholds
        (summary("cancelled", reason="stopped with Ctrl-C"), EXIT_FAILED),
        (summary("running"), EXIT_FAILED),
        ({}, EXIT_FAILED),
    ],
)
def test_exit_code_of_a_summary(document: dict[str, Any], code: int) -> None:
    assert exit_code(document) == code


def test_verdict_names_the_status_the_reason_and_the_failed_thresholds() -> None:
    assert verdict(summary("completed")) == "completed"
    assert verdict(summary("completed", thresholds=[HELD])) == "completed, 1 threshold held"
    assert verdict(summary("completed", thresholds=[HELD, BROKEN])) == (
        "thresholds failed: total: error_rate < 0.01 (0.25)"
    )
    assert verdict(summary("cancelled", reason="stopped with Ctrl-C")) == (
        "cancelled: stopped with Ctrl-C"
    )
    assert verdict(summary("failed", reason="aborted: 98% connection errors")) == (
        "failed: aborted: 98% connection errors"
    )


def test_a_run_that_measured_nothing_fails_with_its_workers_errors_on_one_line() -> None:
    workers = [
        {"index": 0, "state": "failed", "error": "pod p cannot start:\n  ImagePullBackOff"},
        {"index": 1, "state": "pending", "error": None},
    ]
    failed = summary("failed", requests=0, reason="no worker completed: failed", workers=workers)
    cause = launch_failure(failed)
    assert cause == (
        "no worker completed: failed; worker 0 failed: pod p cannot start: ImagePullBackOff"
    )
    assert verdict(failed) == f"failed: {cause}"
    # once it measured something, its report tells more than the cause alone
    assert launch_failure(summary("failed", requests=3, reason="aborted")) is None
    assert launch_failure(summary("completed", requests=0)) is None


def test_instants_are_rfc3339_utc_with_milliseconds() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_765_000_000.1234) == "2025-12-06T05:46:40.123Z"
    assert rfc3339(None) is None
    assert epoch_s("2025-12-06T05:46:40.123Z") == pytest.approx(1_765_000_000.123)
    info = ClusterInfo(id="c", started_at=1.5, ended_at=None)  # epoch seconds, as stored
    assert info.model_dump()["started_at"] == "1970-01-01T00:00:01.500Z"


def test_target_urls_lose_their_credentials_and_the_config_digest_its_layout() -> None:
    assert public_url("http://user:secret@10.0.0.1:8000/v1?key=k") == "http://10.0.0.1:8000/v1"
    assert public_url("http://[::1]:8000") == "http://[::1]:8000"
    assert config_sha256('{"b": 1, "a": [1, 2]}') == config_sha256('{\n  "a": [1,2],\n  "b": 1}')
    assert config_sha256('{"a": 1}') != config_sha256('{"a": 2}')


def test_a_directory_with_an_earlier_run_is_refused_unless_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "logs" / "0123456789ab").mkdir(parents=True)
    (out / "logs" / "0123456789ab" / "worker-0.log").write_text("log")
    for name in ("summary.json", "samples.jsonl", "config.json", "notes.md"):
        (out / name).write_text("x")
    with pytest.raises(ConfigError) as refused:
        prepare_run_dir(out)
    (line,) = refused.value.problems
    assert line == (
        f"--output {out} holds an earlier run (summary.json, config.json, samples.jsonl): "
        "give another directory, or --overwrite to replace that run"
    )
    assert prepare_run_dir(out, overwrite=True) == out
    assert sorted(p.name for p in out.iterdir()) == ["notes.md"]  # the user's file stays
    assert earlier_run_files(out) == []
    assert prepare_run_dir(out) == out  # nothing of a run left: accepted
    assert prepare_run_dir(tmp_path / "new" / "deeper").is_dir()  # parents are made


def test_unusable_output_paths_are_one_line_each(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    cases = [
        (lambda: prepare_run_dir(file), f"--output {file}: is a file, not a directory"),
        (lambda: prepare_run_dir(Path("/proc/x")), "--output /proc/x: cannot create it: "),
        (lambda: check_output_file(tmp_path), f"--output {tmp_path}: is a directory, not a file"),
        (
            lambda: check_output_file(tmp_path / "missing" / "x"),
            f"--output {tmp_path}/missing/x: no such directory: {tmp_path}/missing",
        ),
        (lambda: check_output_file(file / "x"), f"--output {file}/x: {file} is a file"),
    ]
    for call, start in cases:
        with pytest.raises(ConfigError) as caught:
            call()
        (line,) = caught.value.problems
        assert line.startswith(start), line
    check_output_file(tmp_path / "samples.csv")  # a new file in a directory: fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="cannot write there"):
        prepare_run_dir(locked)


def test_two_runs_in_the_same_second_get_two_directories(tmp_path: Path) -> None:
    now = datetime(2026, 12, 7, 5, 30, 1)
    first = new_run_dir(tmp_path / "results", "demo", now)
    second = new_run_dir(tmp_path / "results", "demo", now)
    third = new_run_dir(tmp_path / "results", "demo", now)
    assert [first.name, second.name, third.name] == [
        "demo-20261207-053001",
        "demo-20261207-053001-2",
        "demo-20261207-053001-3",
    ]
    assert all(d.is_dir() for d in (first, second, third))
