"""The preflight: every target checked where the clients run, before any client starts.

The checks run against real targets on loopback: a closed port, a socket that never answers,
the simulator serving another model, and a tiny target written here that wants an API key.
Then the three ways a cluster starts: ``clientswarm run`` (the run process checks while its
workers start), the service's API (201, then ``failed`` with the reason and the events), and
worker 0 checking for the service (as on Slurm and Kubernetes; forced here with local workers).
"""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from rich.console import Console

from clientswarm import aio
from clientswarm.config.loader import validate_config_data
from clientswarm.preflight import run_preflight
from clientswarm.protocol.assignment import Assignment
from clientswarm.protocol.internal import NotYet, RegisterRequest
from clientswarm.protocol.preflight import PreflightPlan, PreflightReport, preflight_plan
from clientswarm.run.local import run_cluster
from clientswarm.run.start import start_run
from clientswarm.service.following import worker_ended
from clientswarm.service.lifecycle import WorkerState
from clientswarm.service.manager import ClusterManager, Gone
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Store
from processes import processes_naming
from service_process import CLI, ServiceProcess, simulator
from stand_in_spawner import StandInSpawner

SERVED = "served-model"
KEY = "right-key"
HELLO = RegisterRequest(pid=1, host="h", version="0")


def config_data(url: str, *, model: str = SERVED, workers: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": "pre",
        "target": {"url": url, "model": model, "timeout_s": 10},
        "spawner": {"kind": "local", "workers": workers},
        "groups": [
            {
                "name": "chat",
                "clients": workers,
                "interaction": {"kind": "chat", "max_tokens": 4},
                "stop": {"requests": 2 * workers},
            }
        ],
        **extra,
    }


def plan_of(url: str, **extra: Any) -> PreflightPlan:
    plan = preflight_plan(validate_config_data(config_data(url, **extra)))
    assert plan is not None
    return plan


def closed_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The simulator, serving another model than the tests' configurations name by default."""
    with simulator("--model", SERVED, "--ttft-ms", "1", "--itl-ms", "1") as url:
        yield url


@pytest.fixture
async def keyed() -> AsyncIterator[str]:
    """A target that answers 401 to a request without ``Bearer right-key``, 200 with it."""

    async def models(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"object": "list", "data": [{"id": SERVED}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# -- the checks ---------------------------------------------------------------------------------


async def test_a_closed_port_is_one_line_naming_host_and_port() -> None:
    port = closed_port()
    report = await run_preflight(plan_of(f"http://127.0.0.1:{port}"), {})
    (error,) = report.errors
    assert error.check == "answers"
    assert error.message == (
        f"target at 127.0.0.1:{port} does not answer: connection refused (nothing listens there)"
    )
    assert report.failure() == f"preflight failed: {error.message}"


async def test_a_target_that_never_answers_fails_within_the_timeout() -> None:
    with socket.socket() as silent:  # connections complete in the kernel, nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        report = await run_preflight(plan_of(url, preflight_timeout_s=0.3), {})
        assert time.monotonic() - began < 2.0
    (error,) = report.errors
    assert error.message.endswith("does not answer: no answer within 0.3 s (preflight_timeout_s)")


async def test_a_target_that_does_not_speak_http_does_not_answer() -> None:
    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(ssh, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        report = await run_preflight(plan_of(f"http://127.0.0.1:{port}"), {})
    (error,) = report.errors
    assert error.message.startswith(f"target at 127.0.0.1:{port} does not answer: it did not ")


async def test_a_url_ending_in_v1_is_caught_with_the_fix(served: str) -> None:
    report = await run_preflight(plan_of(served + "/v1"), {})
    (error,) = report.errors
    assert error.check == "url"
    assert f"target.url {served}/v1 ends in /v1" in error.message
    assert f"{served}/v1/v1/chat/completions" in error.message
    assert error.message.endswith(f"write url: {served}")


async def test_a_model_the_server_does_not_serve_lists_those_it_does(served: str) -> None:
    report = await run_preflight(plan_of(served, model="mock-model"), {})
    (error,) = report.errors
    assert error.check == "model"
    assert error.message.endswith(f"does not serve model 'mock-model'; it serves: '{SERVED}'")
    fine = await run_preflight(plan_of(served), {})
    assert not fine.errors and not fine.warnings
    assert {c.check for c in fine.checks} == {"answers", "model"}


async def test_an_unset_key_is_a_warning_naming_it(served: str) -> None:
    target = {"url": served, "model": SERVED, "api_key_env": "PREFLIGHT_TEST_KEY"}
    report = await run_preflight(plan_of(served, target=target), {})
    assert not report.errors
    (warning,) = report.warnings
    assert warning.check == "api_key" and "PREFLIGHT_TEST_KEY is not set" in warning.message


async def test_401_is_an_error_with_the_key_unset_or_refused(keyed: str) -> None:
    target = {"url": keyed, "model": SERVED, "api_key_env": "PREFLIGHT_TEST_KEY"}
    plan = plan_of(keyed, target=target)
    unset = await run_preflight(plan, {})
    (error,) = unset.errors
    assert error.check == "auth" and "answered 401 Unauthorized to GET /v1/models" in error.message
    assert error.message.endswith(
        "PREFLIGHT_TEST_KEY is not set where the clients run; set it to the target's key"
    )
    assert [w.check for w in unset.warnings] == ["api_key"]
    wrong = await run_preflight(plan, {"PREFLIGHT_TEST_KEY": "wrong"})
    (error,) = wrong.errors
    assert error.message.endswith("it refused the API key from PREFLIGHT_TEST_KEY")
    right = await run_preflight(plan, {"PREFLIGHT_TEST_KEY": KEY})
    assert not right.errors and not right.warnings
    no_key = await run_preflight(plan_of(keyed), {})
    assert no_key.errors[0].message.endswith(
        "name the variable that holds it in target.api_key_env"
    )


async def test_other_interactions_only_need_an_answer(keyed: str) -> None:
    hello = {"name": "h", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}
    targets = {"a": {"url": keyed + "/v1"}, "b": {"url": f"http://127.0.0.1:{closed_port()}"}}
    config = {
        "name": "two",
        "targets": targets,
        "groups": [{**hello, "target": "a"}, {**hello, "name": "g", "target": "b"}],
    }
    plan = preflight_plan(validate_config_data(config))
    assert plan is not None
    report = await run_preflight(plan, {})
    passed, failed = report.checks
    assert passed.level == "passed" and passed.message.startswith("target 'a' at 127.0.0.1:")
    assert failed.level == "error" and failed.message.startswith("target 'b' at 127.0.0.1:")
    assert preflight_plan(validate_config_data({**config, "preflight": False})) is None


# -- clientswarm run ----------------------------------------------------------------------------


def test_run_against_a_closed_port_ends_before_any_client_starts(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    port = closed_port()
    file.write_text(
        f"name: dead\ntarget: {{url: 'http://127.0.0.1:{port}', model: {SERVED}}}\n"
        "groups: [{name: chat, clients: 2, interaction: {kind: chat}, stop: {duration_s: 30}}]\n"
    )
    out = tmp_path / "out"
    began = time.monotonic()
    done = subprocess.run(
        [CLI, "run", str(file), "-o", str(out), "--samples-format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - began < 20  # not the 30 s of the run
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"error: the run failed: preflight failed: target at 127.0.0.1:{port} does not "
        "answer: connection refused (nothing listens there)"
    )
    assert (out / "samples.jsonl").read_text() == ""  # no client sent anything
    (cluster,) = (out / "logs").iterdir()
    assert not processes_naming(cluster.name)


def test_calibrate_against_a_closed_port_gives_no_figure(tmp_path: Path) -> None:
    port = closed_port()
    target = f"http://127.0.0.1:{port}"
    args = ("--interaction", "hello", "--seconds", "30", "--target", target)
    done = subprocess.run(
        [CLI, "calibrate", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"error: the calibration run failed: preflight failed: target at 127.0.0.1:{port} "
        "does not answer: connection refused (nothing listens there)"
    )


# -- the service's API ----------------------------------------------------------------------------


def test_over_the_api_the_cluster_is_created_then_fails_with_the_events(
    tmp_path: Path, served: str
) -> None:
    with ServiceProcess(tmp_path / "svc") as svc:
        status, created = svc.api("POST", "/clusters", config_data(served, model="mock-model"))
        assert status == 201, created
        view = svc.wait_status(created["id"], timeout_s=30)
        assert view["status"] == "failed"
        assert view["reason"] == (
            f"preflight failed: target at {served.removeprefix('http://')} does not serve model "
            f"'mock-model'; it serves: '{SERVED}'"
        )
        assert view["started_at"] is None  # no start time was ever fixed
        status, events = svc.api("GET", f"/clusters/{created['id']}/events")
        assert status == 200
        preflight = [e for e in events if e["kind"].startswith("preflight_")]
        assert [(e["kind"], e["data"]["check"]) for e in preflight] == [
            ("preflight_passed", "answers"),
            ("preflight_error", "model"),
        ]
        assert preflight[1]["message"] in view["reason"]
        assert preflight[0]["data"]["where"].startswith("the service on ")
        status, results = svc.api("GET", f"/clusters/{created['id']}/results")
        assert results["total"]["requests"] == 0
        assert {w["state"] for w in results["workers"]} == {"cancelled"}
        # the same cluster, its preflight off: it runs (the simulator takes any model)
        off = config_data(served, model="mock-model", preflight=False)
        status, created = svc.api("POST", "/clusters", off)
        view = svc.wait_status(created["id"], timeout_s=60)
        assert view["status"] == "completed", view
        status, events = svc.api("GET", f"/clusters/{created['id']}/events")
        assert not [e for e in events if e["kind"].startswith("preflight_")]


# -- worker 0 checks, as on Slurm and Kubernetes ------------------------------------------------


def run_checked_by_worker_0(tmp_path: Path, data: dict[str, Any]) -> tuple[Store, str]:
    """Run ``data`` as ``clientswarm run`` does, with real local workers, worker 0 checking the
    targets in place of the run's service; the store and the cluster id."""
    config = validate_config_data(data)
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    with start_run(config, output_dir=tmp_path) as start:
        start.settings.preflight_on_workers = True
        console = Console(file=io.StringIO())
        cluster_id = aio.run(
            run_cluster(config, base_dir=tmp_path, console=console, store=store, start=start)
        )
    assert not processes_naming(cluster_id)
    return store, cluster_id


def test_worker_0_checks_and_the_cluster_runs(tmp_path: Path, served: str) -> None:
    store, cluster_id = run_checked_by_worker_0(tmp_path, config_data(served, workers=2))
    record = store.get_cluster(cluster_id)
    assert record is not None and record.status == "completed"
    events = [e for e in store.list_events(cluster_id) if e.kind.startswith("preflight_")]
    assert [e.kind for e in events] == ["preflight_passed", "preflight_passed"]
    assert all(e.data and e.data["where"].startswith("worker 0 on ") for e in events)
    assert store.count_samples(cluster_id) == 4


def test_worker_0_reports_a_failure_and_no_client_starts(tmp_path: Path, served: str) -> None:
    data = config_data(served, model="mock-model", workers=2)
    store, cluster_id = run_checked_by_worker_0(tmp_path, data)
    record = store.get_cluster(cluster_id)
    assert record is not None and record.status == "failed"
    assert record.reason is not None and record.reason.startswith("preflight failed: ")
    assert record.reason.endswith(f"does not serve model 'mock-model'; it serves: '{SERVED}'")
    assert record.start_ns is None and store.count_samples(cluster_id) == 0
    assert {w.state for w in store.list_workers(cluster_id)} == {"cancelled"}


async def manager_of(tmp_path: Path) -> ClusterManager:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    settings = ServiceSettings(data_dir=tmp_path, preflight_on_workers=True, assignment_hold_s=0.05)
    manager = ClusterManager(store, settings, spawners={"local": StandInSpawner()})
    await manager.start()
    return manager


async def test_the_start_waits_for_worker_0s_report(tmp_path: Path) -> None:
    manager = await manager_of(tmp_path)
    try:
        data = config_data(f"http://127.0.0.1:{closed_port()}", workers=2)
        state = manager.active[(await manager.create(validate_config_data(data))).id]
        first = await manager.register(state, 0, HELLO)
        second = await manager.register(state, 1, HELLO)
        assert first.preflight is not None and second.preflight is None
        assert [t.target.url for t in first.preflight.targets] == [data["target"]["url"]]
        waiting = await manager.assignment(state, 1)
        assert isinstance(waiting, NotYet) and "preflight" in waiting.reason
        assert state.start_ns is None
        await manager.preflights.reported(state, 0, PreflightReport(where="worker 0 on h"))
        assert isinstance(await manager.assignment(state, 1), Assignment)
        assert (await manager.register(state, 0, HELLO)).preflight is None  # done: not again
    finally:
        await manager.close()


async def test_a_worker_0_that_ends_before_its_report_fails_the_cluster(tmp_path: Path) -> None:
    manager = await manager_of(tmp_path)
    try:
        data = config_data(f"http://127.0.0.1:{closed_port()}", workers=2)
        state = manager.active[(await manager.create(validate_config_data(data))).id]
        await manager.register(state, 1, HELLO)
        await worker_ended(state, 0, WorkerState.FAILED, "its node died")
        with pytest.raises(Gone):
            await manager.assignment(state, 1)
        assert state.failure == (
            "preflight failed: worker 0 ended (failed) before it reported the check"
        )
        await asyncio.wait_for(manager.wait_finished(state.id), 10)
        record = manager.store.get_cluster(state.id)
        assert record is not None and record.status == "failed"
    finally:
        await manager.close()
