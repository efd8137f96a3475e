"""The ``local`` spawner: workers are processes on the service's machine.

Each worker runs ``python -m clientswarm.worker --service URL --cluster ID --index N`` in its
own session, with the cluster token in its environment and its output in
``<log_dir>/worker-<N>.log`` (or takes a standby worker that has already loaded its code, see
:mod:`clientswarm.spawners.standby`). Workers outlive a restart of the service (they keep retrying
their batches until it is back); the service then follows them by pid and by heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

from clientswarm.errors import SpawnerError
from clientswarm.spawners.base import ClusterLaunch, WorkerExit
from clientswarm.spawners.standby import StandbyWorkers

LOG_TAIL_LINES = 20


def log_path(log_dir: str | Path, index: int) -> Path:
    """Where worker ``index`` writes its output."""
    return Path(log_dir) / f"worker-{index}.log"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: alive
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no procfs (macOS): trust kill(0)
        return True


class LocalSpawner:
    """Starts one process per worker on this machine."""

    kind = "local"

    def __init__(self, standby: StandbyWorkers | None = None) -> None:
        # Processes this service instance started; after a restart only pids remain.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._standby = standby

    def argv(self, launch: ClusterLaunch, index: int) -> list[str]:
        """The command line of worker ``index``."""
        return [launch.python, "-m", "clientswarm.worker", *launch.worker_args(index)]

    def render(self, launch: ClusterLaunch) -> str:
        """The commands that :meth:`submit` runs, one per worker, token redacted."""
        lines = [f"# cluster {launch.cluster_id}: {launch.workers} local worker process(es)"]
        for index in range(launch.workers):
            env = " ".join(f"{name}=<redacted>" for name in launch.worker_env())
            command = shlex.join(self.argv(launch, index))
            log = shlex.quote(str(log_path(launch.log_dir, index)))
            lines.append(f"{env} {command} > {log} 2>&1 &")
        return "\n".join(lines) + "\n"

    async def submit(self, launch: ClusterLaunch) -> dict[str, Any]:
        """Start every worker; the state holds their pids."""
        return await asyncio.to_thread(self._start_all, launch)

    def _start_all(self, launch: ClusterLaunch) -> dict[str, Any]:
        Path(launch.log_dir).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **launch.worker_env()}
        pids: dict[str, int] = {}
        for index in range(launch.workers):
            if self._standby is not None:
                ready = self._standby.hand_off(launch, index, log_path(launch.log_dir, index))
                if ready is not None:
                    self._children[ready.pid] = ready
                    pids[str(index)] = ready.pid
                    continue
            try:
                with log_path(launch.log_dir, index).open("ab") as log:
                    process = subprocess.Popen(
                        self.argv(launch, index),
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # outlives the service; a Ctrl-C does not hit it
                    )
            except OSError as exc:
                self._kill_now([int(pid) for pid in pids.values()])
                raise SpawnerError(
                    f"could not start worker {index} of cluster {launch.cluster_id} with "
                    f"{launch.python}: {exc}"
                ) from exc
            self._children[process.pid] = process
            pids[str(index)] = process.pid
        return {"pids": pids, "log_dir": launch.log_dir}

    async def poll(self, cluster_id: str, state: dict[str, Any]) -> list[WorkerExit]:
        """Workers whose process has ended, with exit code (when known) and log tail."""
        ended: list[WorkerExit] = []
        for key, pid in state.get("pids", {}).items():
            index = int(key)
            child = self._children.get(pid)
            if child is not None:
                code = child.poll()
                if code is None:
                    continue
                reason = f"exited with code {code}"
            elif pid_alive(pid):
                continue
            else:
                code, reason = None, "its process is gone (exit code unknown after a restart)"
            tail = log_tail(log_path(state.get("log_dir", "."), index))
            ended.append(WorkerExit(index, code, reason, tail))
        return ended

    async def stop(self, cluster_id: str, state: dict[str, Any], grace_s: float) -> None:
        """SIGTERM every live worker, then SIGKILL those still alive after ``grace_s``."""
        pids = [int(pid) for pid in state.get("pids", {}).values()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for _ in range(max(1, int(grace_s / 0.05))):
            if not any(self._alive(pid) for pid in pids):
                break
            await asyncio.sleep(0.05)
        self._kill_now(pids)

    async def release(self, cluster_id: str, state: dict[str, Any]) -> None:
        """Forget the worker processes of a finished cluster once they have been reaped."""
        for pid in [int(pid) for pid in state.get("pids", {}).values()]:
            child = self._children.get(pid)
            if child is not None and child.poll() is not None:
                del self._children[pid]

    def _kill_now(self, pids: list[int]) -> None:
        for pid in pids:
            if self._alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            child = self._children.get(pid)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=1.0)

    def _alive(self, pid: int) -> bool:
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        return pid_alive(pid)
