"""The fault matrix: a short real cluster through a real ``clientswarm serve`` (with an API
token) under each fault an outside prober found, and per fault the invariants of issue 14:

- every request the target saw is a stored sample (the simulator's ``/mock/stats`` count, or
  the scripted server's request list, against ``GET …/samples?format=jsonl``);
- no sample is stored twice (a sample of a built-in interaction is identified by its client and
  its scheduled time: client ids are cluster-wide and a client's arrivals are distinct);
- nothing acknowledged is lost: each worker's own count of acknowledged samples (its last log
  line) is what the store holds for it.

Faults of the target (errors, drops, malformed streams, a closed port) run on one shared
service; faults of a worker, of the service and of PostgreSQL get their own where they need it.
Open-loop constant arrivals make the counts exact where they can be.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clientswarm.protocol.assignment import Assignment
from integration.scripted_server import DONE, Script, ScriptedServer, chat_chunk, completion_chunk
from postgres import PostgresServer, find_binary
from service_process import ServiceProcess, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TOKEN = "fault-matrix-token-5c1e"
# How often a worker ships its samples (the service leaves the default).
BATCH_INTERVAL_S: float = Assignment.model_fields["batch_interval_s"].default
# A worker's last log line: its own count of the samples the service acknowledged.
ACKNOWLEDGED = re.compile(
    r"worker (\d+) finished \(\w+\): (\d+) samples in \d+ batches acknowledged"
)


# -- configurations ---------------------------------------------------------------------------


def open_group(
    interaction: dict[str, Any],
    *,
    name: str = "g",
    clients: int = 2,
    rate: float = 20,
    duration_s: float = 2,
) -> dict[str, Any]:
    """An open-loop group of constant arrivals: exactly ``rate * duration_s`` of them."""
    return {
        "name": name,
        "clients": clients,
        "interaction": interaction,
        "load": {"kind": "open", "rate": rate, "arrival": "constant"},
        "stop": {"duration_s": duration_s},
    }


def cluster(
    target: str, *groups: dict[str, Any], workers: int = 1, sample_path: str = "service"
) -> dict[str, Any]:
    return {
        "name": "fault-matrix",
        "seed": 7,
        "target": {"url": target, "model": "mock-model", "timeout_s": 10},
        "preflight": False,  # the faults come mid-run; every request the target sees is a sample
        "spawner": {"kind": "local", "workers": workers},
        "groups": list(groups),
        "sample_path": sample_path,
    }


# Where the samples go: posted to the service, or the high-rate path (the workers' files, with
# only each tick's tallies posted). The faults of workers and of the service run on both.
SAMPLE_PATHS = pytest.mark.parametrize("sample_path", ["service", "files"])


CHAT = {"kind": "chat", "stream": False, "max_tokens": 4}
COMPLETION = {"kind": "completion", "stream": False, "max_tokens": 4}
STREAMING_CHAT = {"kind": "chat", "stream": True, "max_tokens": 4}
HELLO = {"kind": "hello"}


# -- running one cluster and reading what came of it -------------------------------------------


@dataclass
class Run:
    """A finished cluster: its view, its stored samples, the workers' own acknowledged counts."""

    view: dict[str, Any]
    samples: list[dict[str, Any]]
    acknowledged: dict[int, int]  # by worker index, for the workers that finished
    events: list[str]  # the kinds of the cluster's events, in order

    def stored_by_worker(self) -> Counter[int]:
        return Counter(s["worker"] for s in self.samples)

    def error_kinds(self) -> Counter[str | None]:
        return Counter(s["error_kind"] for s in self.samples)


def submit(svc: ServiceProcess, config: dict[str, Any]) -> str:
    status, created = svc.api("POST", "/clusters", config)
    assert status == 201, created
    return str(created["id"])


def finish(svc: ServiceProcess, cluster_id: str) -> Run:
    """Wait for the cluster to end; collect its samples and its workers' acknowledged counts."""
    view = svc.wait_status(cluster_id, timeout_s=60)
    status, raw, _ = svc.request("GET", f"/clusters/{cluster_id}/samples?format=jsonl")
    assert status == 200, raw[:500]
    samples = [json.loads(line) for line in raw.splitlines()]
    acknowledged: dict[int, int] = {}
    for log in (svc.data_dir / "logs" / cluster_id).glob("worker-*.log"):
        for match in ACKNOWLEDGED.finditer(log.read_text(errors="replace")):
            acknowledged[int(match[1])] = int(match[2])
    _, events = svc.api("GET", f"/clusters/{cluster_id}/events")
    return Run(view, samples, acknowledged, [e["kind"] for e in events])


def simulator_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/mock/stats", timeout=10) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
    return stats


def seen_by(url: str) -> Counter[str]:
    """Requests the simulator at ``url`` received by route, its own ``/mock/...`` left out."""
    stats = simulator_stats(url)
    # Its /mock pages and the run's scrapes of its /metrics are not load.
    own = ("/mock", "/metrics")
    return Counter({r: n for r, n in stats["requests"].items() if not r.startswith(own)})


def assert_stored_once(run: Run) -> None:
    """No two samples of one interaction, and every finished worker's acknowledged samples
    stored (no more: the store holds no sample a worker did not send)."""
    assert not [s for s in run.samples if s["step"]]  # built-ins only: the key below holds
    keys = Counter((s["client"], s["scheduled_ns"]) for s in run.samples)
    assert [k for k, n in keys.items() if n > 1] == []
    stored = run.stored_by_worker()
    assert {w: stored[w] for w in run.acknowledged} == run.acknowledged


def wait_running(svc: ServiceProcess, cluster_id: str) -> None:
    svc.wait_status(cluster_id, ("running",), timeout_s=60)


# -- the target's faults: one shared service, every fault's cluster at once ----------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service with an API token, shared by the faults that do not touch it."""
    with ServiceProcess(
        tmp_path_factory.mktemp("svc"), token=TOKEN, extra=("--lost-after-s", "2")
    ) as svc:
        yield svc


@dataclass(frozen=True)
class TargetFault:
    """Simulator flags, the interaction that meets them, the error kinds they must show as."""

    flags: tuple[str, ...]
    interaction: dict[str, Any]
    kinds: dict[str, str]  # the simulator's fault label → the sample's error kind


TARGET_FAULTS = {
    "http-500": TargetFault(("--error-rate-500", "0.3"), CHAT, {"http_500": "http_500"}),
    "http-429": TargetFault(("--error-rate-429", "0.3"), COMPLETION, {"http_429": "http_429"}),
    "drops-and-stream-errors": TargetFault(
        ("--drop-rate", "0.2", "--stream-error-rate", "0.2"),
        STREAMING_CHAT,
        {"drop": "connection", "stream_error": "stream_error"},
    ),
}

# Streams the OpenAI API does not allow: an event that is not JSON, and a stream that just ends
# (no finish reason, no [DONE]).
MALFORMED = {
    "/v1/chat/completions": Script(
        chunks=[
            (0.005, chat_chunk("", role="assistant")),
            (0.005, chat_chunk("Hi")),
            (0.0, b'data: {"choices": [{"delta": \n\n'),
            (0.0, DONE),
        ]
    ),
    "/v1/completions": Script(
        chunks=[(0.005, completion_chunk("Hi")), (0.005, completion_chunk(" there"))]
    ),
}


@contextlib.contextmanager
def scripted(scripts: dict[str, Script]) -> Iterator[ScriptedServer]:
    """A :class:`ScriptedServer` on its own event loop in a thread (the test blocks on HTTP)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ScriptedServer()
    for path, script in scripts.items():
        server.script(path, script)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused, and no other process
    can take the port while the test holds it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@dataclass
class TargetRun:
    """A finished cluster and what its target saw (by route)."""

    run: Run
    seen: Counter[str]
    faults: dict[str, int]  # the simulator's injected faults by label (empty: not the simulator)
    completed: int = 0  # requests the simulator answered in full


@pytest.fixture(scope="module")
def target_runs(service: ServiceProcess) -> dict[str, TargetRun]:
    """Every target fault's cluster, each against its own target, submitted together: they
    share nothing but the service (as several users' clusters would), and one wait for all
    keeps the module short."""
    with contextlib.ExitStack() as stack:
        urls = {
            name: stack.enter_context(
                simulator("--seed", "3", "--ttft-ms", "5", "--itl-ms", "2", *fault.flags)
            )
            for name, fault in TARGET_FAULTS.items()
        }
        configs = {
            name: cluster(urls[name], open_group(fault.interaction))
            for name, fault in TARGET_FAULTS.items()
        }
        malformed = stack.enter_context(scripted(MALFORMED))
        configs["malformed-sse"] = cluster(
            malformed.url,
            open_group(STREAMING_CHAT, name="broken-json", rate=10),
            open_group({**STREAMING_CHAT, "kind": "completion"}, name="no-done", rate=10),
        )
        down = cluster(f"http://127.0.0.1:{stack.enter_context(closed_port())}", workers=2)
        down["groups"] = [open_group(HELLO) | {"load": {"kind": "closed", "think_time_s": 0}}]
        down["abort"] = False  # every attempt stored is what this tests, not the abort rule
        configs["target-down"] = down
        ids = {name: submit(service, config) for name, config in configs.items()}
        runs = {name: finish(service, cluster_id) for name, cluster_id in ids.items()}
        results: dict[str, TargetRun] = {}
        for name, url in urls.items():
            stats = simulator_stats(url)
            results[name] = TargetRun(runs[name], seen_by(url), stats["faults"], stats["completed"])
        load = Counter(r.path for r in malformed.requests if r.path != "/metrics")  # not scrapes
        results["malformed-sse"] = TargetRun(runs["malformed-sse"], load, {})
        results["target-down"] = TargetRun(runs["target-down"], Counter(), {})
    return results


@pytest.mark.parametrize("name", list(TARGET_FAULTS))
def test_a_faulty_target_is_one_stored_sample_per_request(
    target_runs: dict[str, TargetRun], name: str
) -> None:
    result, fault = target_runs[name], TARGET_FAULTS[name]
    run = result.run
    assert run.view["status"] == "completed", run.view
    assert len(run.samples) == result.seen.total() == 40  # 2 s at 20/s
    assert_stored_once(run)
    assert sum(run.acknowledged.values()) == 40
    # Each injected fault is one failed sample of its kind; the rest are the target's successes.
    kinds = run.error_kinds()
    for label, kind in fault.kinds.items():
        assert result.faults[label] > 0 and kinds[kind] == result.faults[label], kinds
    assert kinds[None] == result.completed == 40 - sum(result.faults.values())


def test_malformed_streams_are_one_protocol_error_each(
    target_runs: dict[str, TargetRun],
) -> None:
    result = target_runs["malformed-sse"]
    run = result.run
    assert run.view["status"] == "completed", run.view
    assert result.seen == {"/v1/chat/completions": 20, "/v1/completions": 20}
    assert len(run.samples) == 40
    assert_stored_once(run)
    assert sum(run.acknowledged.values()) == 40
    by_group = Counter((s["group"], s["error_kind"]) for s in run.samples)
    assert by_group == {("broken-json", "protocol"): 20, ("no-done", "protocol"): 20}


def test_a_target_that_is_down_is_a_connection_error_per_attempt(
    target_runs: dict[str, TargetRun],
) -> None:
    run = target_runs["target-down"].run
    assert run.view["status"] == "completed", run.view
    # Nothing reached a target: the attempts are what the workers recorded and had acknowledged.
    assert sorted(run.acknowledged) == [0, 1]
    assert len(run.samples) == sum(run.acknowledged.values()) > 0
    assert_stored_once(run)
    assert {(s["error_kind"], s["http_status"]) for s in run.samples} == {("connection", None)}


# -- a worker SIGKILLed mid-run -----------------------------------------------------------------


def parent_of(pid: int) -> int:
    """The parent of process ``pid`` (to kill only a worker that our own service started)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state"


@SAMPLE_PATHS
def test_a_killed_worker_loses_only_what_it_had_not_had_acknowledged(
    service: ServiceProcess, sample_path: str
) -> None:
    workers, rate, duration_s = 3, 60, 3
    per_client = rate * duration_s // workers  # one client per worker: client w on worker w
    with simulator("--seed", "3", "--ttft-ms", "5") as target:
        config = cluster(
            target,
            open_group(HELLO, clients=workers, rate=rate, duration_s=duration_s),
            workers=workers,
            sample_path=sample_path,
        )
        cluster_id = submit(service, config)
        wait_running(service, cluster_id)
        time.sleep(1.5)
        _, view = service.api("GET", f"/clusters/{cluster_id}")
        pid = view["workers"][1]["pid"]
        assert service.process is not None and parent_of(pid) == service.process.pid
        os.kill(pid, signal.SIGKILL)
        run = finish(service, cluster_id)
        seen = seen_by(target).total()
    assert run.view["status"] == "completed", run.view
    assert [w["state"] for w in run.view["workers"]] == ["completed", "lost", "completed"]
    stored = run.stored_by_worker()
    assert stored[0] == stored[2] == per_client  # the others' samples, every one
    assert_stored_once(run)
    assert sorted(run.acknowledged) == [0, 2]
    # The killed worker's acknowledged batches are kept; what it loses is at most its buffer and
    # the batch it was shipping (two batch intervals of its arrivals) and its requests in flight.
    unacknowledged_bound = 2 * BATCH_INTERVAL_S * rate / workers + 3
    assert stored[1] > 0
    assert 0 <= seen - len(run.samples) <= unacknowledged_bound, (seen, stored)


# -- faults of the service itself ---------------------------------------------------------------


def hello_run(target: str, sample_path: str = "service") -> dict[str, Any]:
    """3 s of 40 hello arrivals a second on two workers: 120 samples."""
    return cluster(
        target, open_group(HELLO, rate=40, duration_s=3), workers=2, sample_path=sample_path
    )


@SAMPLE_PATHS
def test_a_service_killed_and_restarted_loses_and_repeats_nothing(
    tmp_path: Path, sample_path: str
) -> None:
    data = tmp_path / "svc"
    extra = ("--lost-after-s", "2")
    with simulator("--seed", "3", "--ttft-ms", "5") as target:
        svc = ServiceProcess(data, token=TOKEN, extra=extra).start()
        try:
            cluster_id = submit(svc, hello_run(target, sample_path))
            wait_running(svc, cluster_id)
            time.sleep(1.0)
        finally:
            killed = svc.stop(signal.SIGKILL)
        assert killed == -9  # nothing flushed, replies in flight lost
        time.sleep(0.5)
        with ServiceProcess(data, token=TOKEN, extra=extra, port=svc.port) as svc:
            run = finish(svc, cluster_id)
        seen = seen_by(target).total()
    assert run.view["status"] == "completed", run.view
    assert len(run.samples) == seen == 120
    assert_stored_once(run)
    assert sum(run.acknowledged.values()) == 120


@SAMPLE_PATHS
def test_a_paused_service_loses_no_worker_and_no_sample(tmp_path: Path, sample_path: str) -> None:
    with (
        simulator("--seed", "3", "--ttft-ms", "5") as target,
        ServiceProcess(tmp_path / "svc", token=TOKEN, extra=("--lost-after-s", "1")) as svc,
    ):
        cluster_id = submit(svc, hello_run(target, sample_path))
        wait_running(svc, cluster_id)
        time.sleep(0.5)
        assert svc.process is not None
        os.kill(svc.process.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)  # over twice --lost-after-s while the workers run and deliver
        finally:
            os.kill(svc.process.pid, signal.SIGCONT)
        run = finish(svc, cluster_id)
        seen = seen_by(target).total()
    assert run.view["status"] == "completed", run.view
    assert [w["state"] for w in run.view["workers"]] == ["completed", "completed"]
    assert not {"worker_lost", "worker_back"} & set(run.events), run.events
    assert len(run.samples) == seen == 120
    assert_stored_once(run)
    assert sum(run.acknowledged.values()) == 120


# -- PostgreSQL down mid-run --------------------------------------------------------------------


def pg_ctl(server: PostgresServer, *args: str) -> None:
    """Run ``pg_ctl`` on ``server``'s data directory, as the user that owns it."""
    binary = find_binary("pg_ctl")
    assert binary is not None
    data = server.socket_dir / "data"
    as_owner = ["runuser", "-u", data.owner(), "--"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*as_owner, binary, "-D", str(data), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def postgres_down(server: PostgresServer) -> Iterator[None]:
    """Stop ``server`` as a crash would (immediate mode); on leaving, start it again with the
    options it was started with (its ``postmaster.opts``: ``tests/postgres.py`` has no restart)."""
    opts = shlex.split((server.socket_dir / "data" / "postmaster.opts").read_text())
    assert opts[1] == "-D", opts
    options = shlex.join(opts[3:])  # what follows the binary and its "-D <data>"
    pg_ctl(server, "-m", "immediate", "-w", "stop")
    try:
        yield
    finally:
        log = server.socket_dir / "server.log"
        pg_ctl(server, "-l", str(log), "-w", "-t", "60", "-o", options, "start")


def test_postgresql_down_mid_run_loses_and_repeats_nothing(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    extra = ("--store", postgres_url, "--lost-after-s", "2")
    with (
        simulator("--seed", "3", "--ttft-ms", "5") as target,
        ServiceProcess(tmp_path / "svc", token=TOKEN, extra=extra) as svc,
    ):
        cluster_id = submit(svc, hello_run(target))
        wait_running(svc, cluster_id)
        time.sleep(0.5)
        with postgres_down(postgres_server):
            time.sleep(2.0)
        run = finish(svc, cluster_id)
        seen = seen_by(target).total()
    assert run.view["status"] == "completed", run.view
    assert "store_failing" in run.events  # the store did fail while the workers ran
    assert len(run.samples) == seen == 120
    assert_stored_once(run)
    assert sum(run.acknowledged.values()) == 120
