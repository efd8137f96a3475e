"""Worker processes started before their cluster exists, so start-up overlaps.

``clientswarm run`` knows how many local workers it needs as soon as the configuration is
valid, a second or more before its in-process service is up. It starts that many
``python -m clientswarm.worker --standby`` processes at once: they load their code while the
service loads its own. When the :class:`~clientswarm.spawners.local.LocalSpawner` submits the
cluster, it hands each standby its orders as one JSON line on stdin (:func:`handoff_line`)
instead of starting a fresh interpreter. A standby that is not needed sees its stdin close
and exits; one that died while loading is skipped and a fresh process started instead.

An early start (:meth:`StandbyWorkers.start_early`, used by :mod:`clientswarm.run.early`) goes
further: the orders go out as soon as the configuration is valid, with each worker's
assignment, and :class:`EarlyStart` gives them the start time once all have loaded, so
their clients start before the service is up. Each then registers with the service and has it
confirm that start time; the service creates the cluster with it before it accepts a request.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from clientswarm.protocol.standby import EARLY_READY

if TYPE_CHECKING:
    from clientswarm.protocol.spawning import ClusterLaunch

STANDBY_FLAG = "--standby"

EARLY_STANDBYS_PER_CPU = 2
"""At most this many standbys per CPU are started before the configuration is validated."""


def planned_local_workers(path: Path, override: int | None = None) -> int:
    """How many local workers the configuration file at ``path`` asks for, read without
    validating it (that takes the configuration models, a few tenths of a second to import):
    0 when it is not a local cluster or cannot be read. Only a guess to start standbys early;
    a wrong one costs nothing, since unneeded standbys are dismissed and missing workers are
    started fresh. At most :data:`EARLY_STANDBYS_PER_CPU` per CPU."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        data: Any = orjson.loads(text) if path.suffix.lower() == ".json" else _yaml(text)
        spawner = data.get("spawner") or {}
        if spawner.get("kind", "local") != "local":
            return 0
        workers = override if override is not None else spawner.get("workers", 1)
    except (OSError, ValueError, AttributeError, TypeError):
        return 0
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        return 0
    return min(workers, EARLY_STANDBYS_PER_CPU * (os.cpu_count() or 1))


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def handoff_line(
    launch: ClusterLaunch, index: int, log_path: Path, early: dict[str, Any] | None = None
) -> bytes:
    """The orders a standby worker reads from stdin: what a fresh one gets as arguments and
    environment, plus the log file its output goes to from then on (and its ``early``
    assignment, all but the start time, for an early start)."""
    orders: dict[str, Any] = {
        "args": launch.worker_args(index),
        "env": launch.worker_env(),
        "log": str(log_path),
    }
    if early is not None:
        orders["early"] = early
    return orjson.dumps(orders) + b"\n"


class EarlyStart:
    """Gives standby workers with early orders their start time once every one is ready.

    A thread waits for each standby's ``ready`` line on its stdout; when all have come, it
    fixes the start time ``margin_s`` from then and writes ``start <ns>`` to every standby.
    If one dies first, or not all are ready within ``timeout_s``, every one gets ``wait``
    instead: they register and wait for the service's start time, as without an early start.
    """

    def __init__(
        self, processes: dict[int, subprocess.Popen[bytes]], margin_s: float, timeout_s: float
    ) -> None:
        self._processes = dict(processes)
        self._margin_ns = int(margin_s * 1e9)
        self._timeout_s = timeout_s
        self._start_ns: int | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="clientswarm-early-start", daemon=True
        )
        self._thread.start()

    def start_ns(self) -> int | None:
        """The start time the workers were given (waits for the handshake); ``None`` if none."""
        self._thread.join()
        return self._start_ns

    def cancel(self) -> None:
        """Give up waiting (the run is over before it began); idempotent."""
        self._cancelled.set()
        self._thread.join()

    def _run(self) -> None:
        ready = self._all_ready()
        start_ns = time.time_ns() + self._margin_ns
        line = f"start {start_ns}\n" if ready else "wait\n"
        for process in self._processes.values():
            assert process.stdin is not None
            with contextlib.suppress(OSError, ValueError):
                process.stdin.write(line.encode())
                process.stdin.close()
        if ready:
            self._start_ns = start_ns

    def _all_ready(self) -> bool:
        """Whether every standby said ``ready`` in time (False at the first that died)."""
        waiting = set()
        for process in self._processes.values():
            assert process.stdout is not None
            waiting.add(process.stdout.fileno())
        deadline = time.monotonic() + self._timeout_s
        while waiting:
            if self._cancelled.is_set() or time.monotonic() > deadline:
                return False
            readable, _, _ = select.select(list(waiting), [], [], 0.05)
            for fd in readable:
                waiting.discard(fd)
                if os.read(fd, len(EARLY_READY)) != EARLY_READY:  # b"": it died
                    return False
        return True


class StandbyWorkers:
    """A few worker processes that have loaded their code and wait for their orders."""

    def __init__(self, python: str, processes: list[subprocess.Popen[bytes]]) -> None:
        self.python = python
        self._waiting = processes
        self._early: dict[int, subprocess.Popen[bytes]] = {}  # given early orders, by index
        self._early_cluster: str | None = None
        self._early_start: EarlyStart | None = None

    @classmethod
    def start(cls, python: str, count: int, log_dir: Path) -> StandbyWorkers:
        """Start ``count`` standby workers; their output goes to ``log_dir`` until handed off."""
        log_dir.mkdir(parents=True, exist_ok=True)
        processes: list[subprocess.Popen[bytes]] = []
        for slot in range(count):
            with (log_dir / f"standby-{slot}.log").open("ab") as log:
                try:
                    processes.append(
                        subprocess.Popen(
                            [python, "-m", "clientswarm.worker", STANDBY_FLAG],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,  # "ready" for an early start, then the log
                            stderr=log,
                            start_new_session=True,
                        )
                    )
                except OSError:  # the spawner starts fresh ones and reports the error then
                    break
        return cls(python, processes)

    def __len__(self) -> int:
        return len(self._waiting)

    def start_early(
        self,
        launch: ClusterLaunch,
        assignments: list[dict[str, Any]],
        log_paths: list[Path],
        margin_s: float,
        timeout_s: float = 30.0,
    ) -> EarlyStart | None:
        """Give every worker of ``launch`` its orders and its assignment now (start time
        pending) and start the handshake; ``None`` (nothing done) without a standby each."""
        if launch.python != self.python or len(self._waiting) < launch.workers:
            return None
        for index in range(launch.workers):
            process = self._waiting.pop(0)
            assert process.stdin is not None
            line = handoff_line(launch, index, log_paths[index], early=assignments[index])
            with contextlib.suppress(OSError, ValueError):  # a dead one: the handshake sees it
                process.stdin.write(line)
                process.stdin.flush()
            self._early[index] = process
        self._early_cluster = launch.cluster_id
        self._early_start = EarlyStart(self._early, margin_s, timeout_s)
        return self._early_start

    def hand_off(
        self, launch: ClusterLaunch, index: int, log_path: Path
    ) -> subprocess.Popen[bytes] | None:
        """A live standby given worker ``index`` of ``launch``; ``None`` when none is left."""
        if launch.cluster_id == self._early_cluster and index in self._early:
            process = self._early.pop(index)  # it has its orders already
            if process.poll() is None:
                return process
            _reap(process)
            return None
        if launch.python != self.python:
            return None
        while self._waiting:
            process = self._waiting.pop(0)
            assert process.stdin is not None
            try:
                if process.poll() is not None:
                    raise BrokenPipeError
                process.stdin.write(handoff_line(launch, index, log_path))
                process.stdin.close()
            except (BrokenPipeError, ValueError):
                _reap(process)
                continue
            return process
        return None

    def close(self) -> None:
        """Dismiss the standbys nobody took: their stdin closes and they exit. Those given
        early orders that no spawner took (the run ended before its service was up) may be
        running already: they are terminated."""
        if self._early_start is not None:
            self._early_start.cancel()
        early, self._early = self._early, {}
        _terminate(list(early.values()))
        waiting, self._waiting = self._waiting, []
        for process in waiting:
            _reap(process)


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        # Through the Popen, never os.kill(pid): it sends nothing once the child is reaped,
        # so a reused pid is never hit.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def _terminate(processes: list[subprocess.Popen[bytes]], grace_s: float = 1.0) -> None:
    """SIGTERM (a worker's graceful stop) to all, then SIGKILL to those alive after ``grace_s``:
    with no service to take their samples, they cannot finish cleanly anyway."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
