"""End to end: real worker processes driving the real simulator over loopback.

Each test runs a short cluster (a few seconds) and checks what the statistics say against the
simulator's configured truth or its own count of what it served.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pyarrow.parquet as pq
import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.sample import Sample
from clientswarm.run.mock_target import mock_target
from clientswarm.service.manager import ClusterManager
from clientswarm.service.server import running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import ClusterRecord, Store, WorkerRecord
from processes import processes_naming

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "clientswarm")


def cluster(url: str, *groups: dict[str, Any], workers: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": "it",
        "seed": 7,
        "target": {"url": url, "model": "mock-model", "timeout_s": 10},
        "spawner": {"kind": "local", "workers": workers},
        "groups": list(groups),
        **extra,
    }


@dataclass
class Ran:
    """What an in-process run left in its store."""

    record: ClusterRecord
    summary: dict[str, Any]
    samples: list[Sample]
    workers: list[WorkerRecord]


def started(manager: ClusterManager, cluster_id: str) -> bool:
    """Whether the cluster's start time is fixed (its workers have their assignment)."""
    snapshot = manager.snapshot(cluster_id)
    return snapshot is not None and snapshot.start_ns is not None


async def run_in_process(
    data: dict[str, Any],
    tmp_path: Path,
    *,
    kill_worker_after_s: float | None = None,
    stop_after_s: float | None = None,
) -> Ran:
    """Run a cluster through the service in this process, its workers as real processes."""
    config = validate_config_data(data)
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    settings = ServiceSettings(data_dir=tmp_path, lost_after_s=5.0)
    async with running_service(store, settings) as service:
        manager = service.manager
        record = await manager.create(config, base_dir=tmp_path)
        if kill_worker_after_s is not None or stop_after_s is not None:
            async with manager.changed:
                await manager.changed.wait_for(lambda: started(manager, record.id))
            await asyncio.sleep(kill_worker_after_s or stop_after_s or 0.0)
            if kill_worker_after_s is not None:  # by the pid it registered with
                pid = store.list_workers(record.id)[1].pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
            else:
                await manager.stop_cluster(record.id)
        await manager.wait_finished(record.id)
    finished = store.get_cluster(record.id)
    assert finished is not None and finished.summary_json is not None
    return Ran(
        finished,
        orjson.loads(finished.summary_json),
        list(store.iter_samples(record.id)),
        store.list_workers(record.id),
    )


@pytest.fixture
async def mock_url() -> AsyncIterator[str]:
    async with mock_target("--ttft-ms 50 --itl-ms 10 --seed 3") as url:
        yield url


async def test_measured_ttft_and_itl_match_the_simulator_truth(
    mock_url: str, tmp_path: Path
) -> None:
    chat = {
        "name": "chat",
        "clients": 8,
        "interaction": {"kind": "chat", "max_tokens": 32, "prompts": ["Tell me a story."]},
        "stop": {"duration_s": 3},
    }
    ran = await run_in_process(cluster(mock_url, chat, warmup_s=0.5), tmp_path)
    stats = ran.summary["groups"]["chat"]
    assert ran.record.status == "completed"
    assert stats["failed"] == 0 and stats["requests"] > 50
    assert stats["ttft_s"]["p50"] == pytest.approx(0.050, rel=0.10)
    assert stats["itl_s"]["p50"] == pytest.approx(0.010, rel=0.10)
    assert stats["tpot_s"]["p50"] == pytest.approx(0.010, rel=0.10)
    assert stats["output_tokens"] == 32 * stats["succeeded"]
    assert stats["token_sources"] == {"usage": stats["succeeded"]}
    assert stats["itl_s"]["count"] == 31 * stats["succeeded"]


async def test_open_loop_rate_is_achieved_across_workers(mock_url: str, tmp_path: Path) -> None:
    hello = {
        "name": "hello",
        "clients": 4,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": 80, "arrival": "constant"},
        "stop": {"duration_s": 4},
    }
    poisson = {
        "name": "poisson",
        "clients": 3,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": 40, "arrival": "poisson"},
        "stop": {"duration_s": 4},
    }
    ran = await run_in_process(cluster(mock_url, hello, poisson, workers=2), tmp_path)
    summary, samples = ran.summary, ran.samples
    constant = summary["groups"]["hello"]
    assert constant["requests"] == 320
    assert constant["send_rate"] == pytest.approx(80, rel=0.03)
    assert {s.worker for s in samples if s.group == "hello"} == {0, 1}
    # The Poisson group sends exactly its seeded schedule, on time.
    from clientswarm.load import schedule_for_group

    config = validate_config_data(cluster(mock_url, hello, poisson, workers=2))
    assert summary["groups"]["poisson"]["requests"] == len(schedule_for_group(config, 1))
    assert summary["total"]["schedule_lag_s"]["p50"] < 0.005
    assert summary["total"]["schedule_lag_s"]["min"] >= 0  # never sent before its time
    assert all(s.sent_ns >= s.scheduled_ns for s in samples)
    assert summary["trustworthy"] is True


async def test_injected_faults_are_counted_exactly_by_kind(tmp_path: Path) -> None:
    args = (
        "--ttft-ms 5 --itl-ms 2 --seed 11 --error-rate-500 0.1 --error-rate-429 0.1 "
        "--stream-error-rate 0.1 --drop-rate 0.1"
    )
    async with mock_target(args) as url:
        chat = {
            "name": "chat",
            "clients": 8,
            "interaction": {"kind": "chat", "max_tokens": 16},
            "stop": {"requests": 300},
        }
        ran = await run_in_process(cluster(url, chat, workers=2), tmp_path)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/mock/stats") as r:
            served = await r.json()
    faults = served["faults"]
    stats = ran.summary["groups"]["chat"]
    assert ran.record.status == "completed"
    assert stats["requests"] == 300
    assert stats["errors"] == {
        kind: n
        for kind, n in {
            "http_500": faults.get("http_500", 0),
            "http_429": faults.get("http_429", 0),
            "stream_error": faults.get("stream_error", 0),
            "connection": faults.get("drop", 0),
        }.items()
        if n
    }
    assert stats["failed"] == served["faults_total"] > 60
    assert stats["succeeded"] == 300 - served["faults_total"]


async def test_a_dead_worker_is_reported_and_the_rest_carry_on(
    mock_url: str, tmp_path: Path
) -> None:
    hello = {
        "name": "hello",
        "clients": 4,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": 40, "arrival": "constant"},
        "stop": {"duration_s": 3},
    }
    ran = await run_in_process(
        cluster(mock_url, hello, workers=2), tmp_path, kill_worker_after_s=1.0
    )
    states = {w.index: w for w in ran.workers}
    assert states[1].state == "lost"
    assert "exited with code -9" in (states[1].error or "")
    assert states[0].state == "completed"
    assert ran.record.status == "completed"
    assert any(w.startswith("worker 1 lost") for w in ran.summary["warnings"])
    survivors = [s for s in ran.samples if s.worker == 0]
    assert len(survivors) == 60  # worker 0's half of 3 s at 40/s, untouched


async def test_stages_pace_each_step_and_tag_samples(mock_url: str, tmp_path: Path) -> None:
    sweep = {
        "name": "sweep",
        "clients": 2,
        "interaction": {"kind": "hello"},
        "load": {
            "kind": "open",
            "arrival": "constant",
            "stages": [{"rate": 20, "duration_s": 1}, {"rate": 60, "duration_s": 1}],
        },
    }
    closed = {
        "name": "closed",
        "clients": 4,
        "interaction": {"kind": "hello"},
        "load": {
            "kind": "closed",
            "think_time_s": 0.05,
            "stages": [{"clients": 1, "duration_s": 1}, {"clients": 4, "duration_s": 1}],
        },
    }
    samples = (await run_in_process(cluster(mock_url, sweep, closed), tmp_path)).samples
    per_stage = {0: 0, 1: 0}
    for s in samples:
        if s.group == "sweep":
            per_stage[s.stage] += 1
    assert per_stage == {0: 20, 1: 60}
    closed_clients = {
        k: {s.client for s in samples if s.group == "closed" and s.stage == k} for k in (0, 1)
    }
    assert len(closed_clients[0]) == 1 and len(closed_clients[1]) == 4


async def test_warmup_samples_are_flagged_and_excluded(mock_url: str, tmp_path: Path) -> None:
    hello = {
        "name": "hello",
        "clients": 1,
        "interaction": {"kind": "hello"},
        "load": {"kind": "open", "rate": 20, "arrival": "constant"},
        "stop": {"duration_s": 1},
    }
    ran = await run_in_process(cluster(mock_url, hello, warmup_s=1), tmp_path)
    summary, samples = ran.summary, ran.samples
    assert sum(s.warmup for s in samples) == 20
    assert summary["groups"]["hello"]["requests"] == 20
    assert summary["groups"]["hello"]["warmup_excluded"] == 20


async def test_stop_cancels_in_flight_requests_and_keeps_samples(tmp_path: Path) -> None:
    async with mock_target("--ttft-ms 20 --itl-ms 50") as url:
        chat = {
            "name": "chat",
            "clients": 4,
            "interaction": {"kind": "chat", "max_tokens": 100},
            "stop": {"duration_s": 30},
        }
        ran = await run_in_process(cluster(url, chat), tmp_path, stop_after_s=1.0)
    assert ran.record.status == "cancelled"
    assert ran.workers[0].state == "cancelled"
    cancelled = [s for s in ran.samples if s.error_kind == "cancelled"]
    assert len(cancelled) == 4  # one partial sample per client, with its first token
    assert all(s.first_token_ns is not None for s in cancelled)
    assert ran.summary["total"]["cancelled_excluded"] == 4
    assert ran.summary["total"]["failed"] == 0


def test_run_cli_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: e2e\n"
        "target: {url: 'http://127.0.0.1:1', model: mock-model}\n"
        "spawner: {kind: local, workers: 2}\n"
        "warmup_s: 1\n"
        "slo: {ttft_s: 1.0}\n"
        "groups:\n"
        "  - {name: chat, clients: 4, interaction: {kind: chat, max_tokens: 8},"
        " stop: {duration_s: 1.5}}\n"
        "  - {name: completion, clients: 2, interaction: {kind: completion, stream: false},"
        " stop: {requests: 10}}\n"
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [
            CLI,
            "run",
            str(config),
            "--mock",
            "--mock-args",
            "--ttft-ms 10 --itl-ms 5",
            "-o",
            str(out),
            "--samples-format",
            "parquet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "TTFT" in done.stdout and "chat" in done.stdout
    # Not a terminal: plain progress lines (no bar), the warm-up labelled as such.
    progress = done.stdout[: done.stdout.index("Throughput")].splitlines()
    lines = [line for line in progress if "workers " in line]
    assert lines and all(len(line) < 120 and "━" not in line for line in lines), progress
    assert any("warm-up " in line and "not measured" in line for line in lines), progress
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"cluster", "total", "groups", "warnings", "trustworthy"}
    assert summary["cluster"]["status"] == "completed"
    assert summary["groups"]["completion"]["requests"] == 10
    assert set(summary["total"]["ttft_s"]) >= {"mean", "min", "p50", "p90", "p95", "p99", "max"}
    assert (out / "samples.parquet").exists()
    # one target: named "default", its numbers the total's, and no row of its own in the tables
    assert summary["targets"] == {"default": summary["total"]}
    assert {g["target"] for g in summary["groups"].values()} == {"default"}
    tables = done.stdout[done.stdout.index("Throughput") :]
    assert "TTFT" in tables and "target" not in tables
    targets = pq.read_table(out / "samples.parquet", columns=["target"]).column(0).to_pylist()
    assert set(targets) == {"default"}


def test_run_cli_against_an_unreachable_target_records_failures(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: down\n"
        "target: {url: 'http://127.0.0.1:9', timeout_s: 2}\n"
        "preflight: false\n"  # (the preflight would stop it before any request)
        "groups: [{name: hello, clients: 2, interaction: {kind: hello}, stop: {requests: 6}}]\n"
    )
    done = subprocess.run(
        [CLI, "run", str(config), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["total"]["errors"] == {"connection": 6}


def test_a_missing_dataset_fails_before_the_service_starts(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: ds\n"
        "target: {url: 'http://127.0.0.1:9'}\n"
        "groups: [{name: chat, clients: 1, interaction: {kind: chat, dataset: {path: gone.jsonl}},"
        " stop: {requests: 1}}]\n"
    )
    for command in (["validate", str(config)], ["run", str(config), "-o", str(tmp_path / "o")]):
        done = subprocess.run([CLI, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith("error: groups[0].interaction: dataset ")
        assert "gone.jsonl: file not found" in done.stderr
    assert not (tmp_path / "o" / "summary.json").exists()
    # run started its worker while it checked the dataset, and stopped it.
    (cluster,) = (tmp_path / "o" / "logs").iterdir()
    assert not processes_naming(cluster.name)


async def test_a_spawner_that_cannot_start_workers_says_why(tmp_path: Path) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    settings = ServiceSettings(data_dir=tmp_path, python=str(tmp_path / "no-python"))
    hello = {"name": "h", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}
    async with running_service(store, settings) as service:
        record = await service.manager.create(
            validate_config_data(cluster("http://127.0.0.1:9", hello, preflight=False))
        )
        await service.manager.wait_finished(record.id)
    finished = store.get_cluster(record.id)
    assert finished is not None and finished.status == "failed"
    assert finished.reason is not None
    assert "could not start worker 0" in finished.reason and "no-python" in finished.reason
