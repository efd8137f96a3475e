"""Run one cluster in-process against the simulator and measure who used the CPU.

The cluster runs exactly as ``clientswarm run`` runs it: the service in this process, local
worker processes, samples through the internal API into a SQLite store, the summary exact from
it. While the measured window runs (after warm-up, until the planned end), the CPU time of every
worker, of the simulator and of this process (the service that ingests the sample batches;
``orchestrator`` in the tables) is read from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.sample import Sample
from clientswarm.run.mock_target import mock_target
from clientswarm.service.manager import ClusterManager
from clientswarm.service.server import running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Store, WorkerRecord

CLK_TCK = os.sysconf("SC_CLK_TCK")
SIMULATOR_MODULE = "clientswarm.mock.cli"
#: Simulator histograms whose sum and count are read before and after every case.
SERVER_HISTOGRAMS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
}
#: The CPU window closes this long before the planned end, while every client is still busy.
WINDOW_END_MARGIN_S = 0.1


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far; None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state) of proc(5)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, summed over cores (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / CLK_TCK, sum(ticks) / CLK_TCK


def children(pid: int) -> list[int]:
    """Direct children of ``pid``: from ``/proc/PID/task/*/children`` (a few tens of µs, cheap
    enough to poll every few ms without taking the CPU from what is measured), else by walking
    ``/proc`` (milliseconds: every process's ``stat``)."""
    try:
        found: list[int] = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
        return found
    except FileNotFoundError as exc:
        if not Path(f"/proc/{pid}").exists():
            return []  # gone
        if "children" not in str(exc.filename):
            return []
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of ``pid`` in kB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0])
    if "VmRSS" not in values:
        return None  # a zombie
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


def child_pids(module: str) -> list[int]:
    """Children of this process whose command line names ``module``."""
    return [pid for pid in children(os.getpid()) if module in cmdline(pid).split()]


@dataclass
class Simulator:
    """A running simulator: its base URL and process id (None if it could not be found)."""

    url: str
    pid: int | None


@contextlib.asynccontextmanager
async def simulator(args: str) -> AsyncIterator[Simulator]:
    """Start ``clientswarm mock-server ARGS`` on a free loopback port (see ``mock_target``)."""
    before = set(child_pids(SIMULATOR_MODULE))
    async with mock_target(args) as url:
        new = [pid for pid in child_pids(SIMULATOR_MODULE) if pid not in before]
        yield Simulator(url, new[0] if len(new) == 1 else None)


async def server_totals(url: str) -> dict[str, float]:
    """``<name>_sum`` and ``<name>_count`` of the simulator's TTFT and E2E histograms."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for short, metric in SERVER_HISTOGRAMS.items():
            for part in ("sum", "count"):
                if line.startswith(f"{metric}_{part}{{"):
                    totals[f"{short}_{part}"] = float(line.rsplit(" ", 1)[1])
    return totals


@dataclass
class Outcome:
    """How the cluster ended: its status and its workers."""

    status: str
    workers: list[WorkerRecord]


@dataclass
class CaseRun:
    """What one run of a cluster produced."""

    outcome: Outcome
    summary: dict[str, Any]
    samples: list[Sample]
    """Every sample, warm-up included."""
    server: dict[str, float]
    """Simulator-side histogram sums and counts from ``window_start_ns`` to the end of the run."""
    window_start_ns: int
    """Epoch ns when the measured window opened (the end of warm-up); 0 if it never did."""
    cpu: dict[str, float | None] = field(default_factory=dict)
    """CPU share (1.0 = one core busy) over the measured window: ``worker0``…, ``simulator``,
    ``orchestrator``, ``machine`` (every process, all cores) and ``others`` (the machine less
    the three); None where it could not be read."""


def cluster_config(
    url: str, group: dict[str, Any], *, workers: int, warmup_s: float
) -> dict[str, Any]:
    """A one-group cluster configuration against ``url``."""
    return {
        "name": "bench",
        "seed": 1,
        "target": {"url": url, "model": "mock-model", "timeout_s": 10},
        "spawner": {"kind": "local", "workers": workers},
        "warmup_s": warmup_s,
        "groups": [group],
    }


async def run_case(data: dict[str, Any], sim: Simulator, *, tmp_dir: Path) -> CaseRun:
    """Run the cluster ``data`` to its end through the in-process service; measure the window."""
    config = validate_config_data(data)
    store = Store.from_url_or_path(str(tmp_dir / f"bench-{time.time_ns()}.sqlite"))
    store.create_all()
    async with running_service(store, ServiceSettings(data_dir=tmp_dir)) as service:
        manager = service.manager
        record = await manager.create(config, base_dir=tmp_dir)
        measured_s = max(g.stop.duration_s or 0.0 for g in config.groups)
        window = asyncio.create_task(
            _measure_window(manager, record.id, sim, config.warmup_s, measured_s)
        )
        try:
            async with manager.changed:
                await manager.changed.wait_for(lambda: record.id not in manager.active)
        finally:
            if not window.done():
                window.cancel()
    shares: dict[str, float | None] = {}
    server: dict[str, float] = {}
    window_start_ns = 0
    if window.done() and not window.cancelled() and window.exception() is None:
        shares, server_start, window_start_ns = window.result()
        server_end = await server_totals(sim.url)
        server = {k: v - server_start.get(k, 0.0) for k, v in server_end.items()}
    finished = store.get_cluster(record.id)
    assert finished is not None and finished.summary_json is not None
    outcome = Outcome(finished.status, store.list_workers(record.id))
    samples = list(store.iter_samples(record.id))
    store.close()
    return CaseRun(
        outcome, orjson.loads(finished.summary_json), samples, server, window_start_ns, shares
    )


async def _measure_window(
    manager: ClusterManager, cluster_id: str, sim: Simulator, warmup_s: float, measured_s: float
) -> tuple[dict[str, float | None], dict[str, float], int]:
    """CPU shares from the end of warm-up to just before the planned end of the run; also the
    simulator's histogram totals and the epoch time (ns) when that window opened."""
    state = manager.active[cluster_id]
    async with manager.changed:
        await manager.changed.wait_for(lambda: state.start_ns is not None)
    assert state.start_ns is not None
    start_at = state.start_ns / 1e9 + warmup_s
    end_at = start_at + max(0.2, measured_s - WINDOW_END_MARGIN_S)
    workers = await asyncio.to_thread(manager.store.list_workers, cluster_id)
    pids: dict[str, int | None] = {f"worker{w.index}": w.pid for w in workers}  # as registered
    pids["simulator"] = sim.pid
    pids["orchestrator"] = os.getpid()  # the in-process service that ingests the samples
    await asyncio.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic()
    before = {name: cpu_seconds(pid) if pid else None for name, pid in pids.items()}
    busy0, _ = machine_cpu()
    window_start_ns = time.time_ns()
    server_start = await server_totals(sim.url)
    await asyncio.sleep(max(0.0, end_at - time.time()))
    wall = time.monotonic() - t0
    after = {name: cpu_seconds(pid) if pid else None for name, pid in pids.items()}
    busy1, _ = machine_cpu()
    shares: dict[str, float | None] = {}
    for name in pids:
        b, a = before[name], after[name]
        shares[name] = None if a is None or b is None or wall <= 0 else (a - b) / wall
    ours = sum(v for v in shares.values() if v is not None)
    machine = (busy1 - busy0) / wall if wall > 0 else None
    shares["machine"] = machine
    shares["others"] = None if machine is None else max(0.0, machine - ours)
    return shares, server_start, window_start_ns
