"""Runs one cluster on this machine: spawn the workers, follow them, hand on every sample.

The orchestrator starts one worker per ``spawner.workers``, waits until each has built its
clients (``ready``), hands all of them one shared start time, and then only listens: batches
are written to the samples file as they arrive, status lines feed the progress display, and
a worker that dies is reported while the others carry on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.errors import SpawnerError
from clientswarm.load import group_end_s
from clientswarm.metrics.sample import Sample
from clientswarm.reports.export import SampleWriter
from clientswarm.spawners.local import LocalSpawner, LocalWorker
from clientswarm.worker.assignment import Assignment

READY_TIMEOUT_S = 120.0
START_MARGIN_S = 0.25


@dataclass
class WorkerState:
    """What the orchestrator knows of one worker."""

    index: int
    state: str = "starting"  # starting → ready → running → completed | failed | cancelled
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None
    samples: int = 0
    in_flight: int = 0
    loop_lag_p99_s: float = 0.0
    loop_lag_max_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return dict(self.__dict__)


@dataclass
class RunProgress:
    """Live counters of a run, read by the progress display."""

    planned_s: float | None
    started_at: float = 0.0
    succeeded: int = 0
    failed: int = 0
    workers: list[WorkerState] = field(default_factory=list)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the shared start time (0 before it)."""
        return max(0.0, time.time() - self.started_at) if self.started_at else 0.0

    @property
    def in_flight(self) -> int:
        """Requests in flight over all workers, as of their last status."""
        return sum(w.in_flight for w in self.workers)


@dataclass
class RunOutcome:
    """What :func:`run_cluster` hands back."""

    cluster_id: str
    status: str
    workers: list[WorkerState]
    started_ns: int


def planned_duration_s(config: ClusterConfig) -> float | None:
    """Seconds the cluster runs by its schedule; None when a request count alone bounds it."""
    ends = [group_end_s(group, config.warmup_s) for group in config.groups]
    return None if any(end is None for end in ends) else max(e for e in ends if e is not None)


class Orchestrator:
    """Spawns and follows the workers of one cluster."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        base_dir: Path,
        writer: SampleWriter | None = None,
        spawner: LocalSpawner | None = None,
        on_samples: Callable[[list[Sample]], None] | None = None,
    ) -> None:
        self.config = config
        self.cluster_id = uuid.uuid4().hex[:12]
        self.base_dir = base_dir
        self.writer = writer
        self.spawner = spawner or LocalSpawner()
        self.on_samples = on_samples
        workers = config.spawner.workers
        self.progress = RunProgress(planned_s=planned_duration_s(config))
        self.progress.workers = [WorkerState(i) for i in range(workers)]
        self._procs: list[LocalWorker] = []
        self._cancelled = False
        self.started = asyncio.Event()
        """Set once the workers have been given their shared start time."""

    def cancel(self) -> None:
        """Stop every worker; samples already taken are kept."""
        self._cancelled = True
        for proc in self._procs:
            proc.terminate()

    async def run(self) -> RunOutcome:
        """Run the cluster to its end (or :meth:`cancel`); samples went to the writer."""
        workers = self.config.spawner.workers
        for index in range(workers):
            assignment = Assignment(
                cluster_id=self.cluster_id,
                worker=index,
                workers=workers,
                start_ns=0,
                config=self.config,
                base_dir=str(self.base_dir),
            )
            proc = await self.spawner.start(assignment)
            self._procs.append(proc)
            self.progress.workers[index].pid = proc.pid
        readers = [asyncio.create_task(self._follow(proc)) for proc in self._procs]
        start_ns = await self._start_all()
        await asyncio.gather(*readers)
        status = self._status()
        return RunOutcome(self.cluster_id, status, self.progress.workers, start_ns)

    async def _start_all(self) -> int:
        """Wait for every live worker to be ready, then give them one start time."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        states = self.progress.workers
        while any(s.state == "starting" for s in states):
            if time.monotonic() > deadline:
                for proc, state in zip(self._procs, states, strict=True):
                    if state.state == "starting":
                        state.error = f"not ready after {READY_TIMEOUT_S:.0f} s"
                        proc.terminate()
                break
            await asyncio.sleep(0.02)
        start_ns = time.time_ns() + int(START_MARGIN_S * 1e9)
        self.progress.started_at = start_ns / 1e9
        self.started.set()
        for proc, state in zip(self._procs, states, strict=True):
            if state.state == "ready":
                state.state = "running"
                await proc.send({"type": "start", "start_ns": start_ns})
        if not any(s.state == "running" for s in states):
            self._raise_if_none_started()
        return start_ns

    def _raise_if_none_started(self) -> None:
        lines = [
            f"worker {p.index}: {s.error or 'exited'}; stderr tail:\n{p.stderr_text()}"
            for p, s in zip(self._procs, self.progress.workers, strict=True)
        ]
        if not self._cancelled:
            raise SpawnerError("no worker started:\n" + "\n".join(lines))

    async def _follow(self, proc: LocalWorker) -> None:
        state = self.progress.workers[proc.index]
        finished = False
        seen: set[int] = set()
        async for message in proc.messages():
            kind = message["type"]
            if kind == "batch":
                if message["seq"] in seen:
                    continue  # a batch resent after an interrupted send
                seen.add(message["seq"])
                self._take(message["samples"], state)
            elif kind == "status":
                state.in_flight = int(message["in_flight"])
            elif kind == "ready":
                state.state = "ready"
            elif kind == "finish":
                report = message["report"]
                finished = True
                state.state = report["outcome"]
                state.error = report.get("error")
                state.loop_lag_p99_s = report.get("loop_lag_p99_s", 0.0)
                state.loop_lag_max_s = report.get("loop_lag_max_s", 0.0)
        state.in_flight = 0
        state.exit_code = await proc.wait()
        if not finished:
            state.state = "failed"
            tail = proc.stderr_text().splitlines()[-5:]
            state.error = f"worker exited with code {state.exit_code} before finishing" + (
                ": " + " | ".join(tail) if tail else ""
            )

    def _take(self, samples: list[Sample], state: WorkerState) -> None:
        state.samples += len(samples)
        for sample in samples:
            if sample.status == "ok":
                self.progress.succeeded += 1
            else:
                self.progress.failed += 1
        if self.writer is not None:
            self.writer.write(samples)
        if self.on_samples is not None:
            self.on_samples(samples)

    def _status(self) -> str:
        states = [w.state for w in self.progress.workers]
        if self._cancelled:
            return "cancelled"
        if all(s == "failed" for s in states):
            return "failed"
        return "completed"
