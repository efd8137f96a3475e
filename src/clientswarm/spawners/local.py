"""The ``local`` spawner: workers are processes on the service's machine.

Each worker runs ``python -m clientswarm.worker --service URL --cluster ID --index N`` in its
own session, with the cluster token in its environment and its output in
``<log_dir>/worker-<N>.log``. Workers outlive a restart of the service (they keep retrying their
batches until it is back); the service then follows them by heartbeat and by process, identified
beyond its pid (start time and boot, kept in the :class:`LocalHandle`, see
:mod:`clientswarm.spawners.identity`): a stop signals only the processes it started, never
whatever process now holds a stored pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clientswarm.errors import SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch, SpawnerHandle, WorkerExit
from clientswarm.spawners.identity import WorkerProcess, boot_id, start_ticks

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


class LocalHandle(SpawnerHandle):
    """The worker processes of one cluster: each one's pid and start time (clock ticks after
    boot, ``None`` where unknown) by index, the machine's boot id, and their log folder."""

    pids: dict[int, int]
    started: dict[int, int | None] = {}
    boot_id: str | None = None
    log_dir: str = "."

    @property
    def following(self) -> bool:
        """Whether it names any process."""
        return bool(self.pids)

    def worker(self, index: int) -> WorkerProcess:
        """Worker ``index`` as a process that can be checked before it is signalled."""
        return WorkerProcess(self.pids[index], self.started.get(index), self.boot_id)


class LocalSpawner:
    """Starts one process per worker on this machine."""

    kind = "local"

    def __init__(self) -> None:
        # The processes this service instance started, by cluster and worker index (never by
        # pid: a pid may be reused by another cluster's worker); they are signalled through
        # their Popen. After a restart only the stored identities remain.
        self._children: dict[str, dict[int, subprocess.Popen[bytes]]] = {}

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

    async def submit(self, launch: ClusterLaunch) -> LocalHandle:
        """Start every worker; the handle holds their pids, start times and the boot id."""
        return await asyncio.to_thread(self._start_all, launch)

    def _start_all(self, launch: ClusterLaunch) -> LocalHandle:
        Path(launch.log_dir).mkdir(parents=True, exist_ok=True)
        env = launch.full_env()
        children = self._children.setdefault(launch.cluster_id, {})
        pids: dict[int, int] = {}
        for index in range(launch.workers):
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
                self._kill_now(launch.cluster_id, LocalHandle(pids=pids))
                raise SpawnerError(
                    f"could not start worker {index} of cluster {launch.cluster_id} with "
                    f"{launch.python}: {exc}"
                ) from exc
            children[index] = process
            pids[index] = process.pid
        # Read while they are unreaped children, so each pid is still the process started.
        started = {index: start_ticks(pid) for index, pid in pids.items()}
        return LocalHandle(pids=pids, started=started, boot_id=boot_id(), log_dir=launch.log_dir)

    def restore(self, stored: Mapping[str, Any]) -> LocalHandle:
        """The handle of a restarted service, from its JSON form."""
        return LocalHandle.from_json(stored)

    async def poll(self, cluster_id: str, handle: LocalHandle) -> list[WorkerExit]:
        """Workers whose process has ended, with exit code (when known) and log tail."""
        ended: list[WorkerExit] = []
        children = self._children.get(cluster_id, {})
        for index in handle.pids:
            child = children.get(index)
            if child is not None:
                code = child.poll()
                if code is None:
                    continue
                reason = f"exited with code {code}"
            elif handle.worker(index).alive():
                continue
            else:
                code, reason = None, "its process is gone (exit code unknown after a restart)"
            tail = log_tail(log_path(handle.log_dir, index))
            ended.append(WorkerExit(index, code, reason, tail))
        return ended

    async def stop(self, cluster_id: str, handle: LocalHandle, grace_s: float) -> None:
        """SIGTERM every live worker, then SIGKILL those still alive after ``grace_s``; only
        ever the processes started as its workers (see :mod:`clientswarm.spawners.identity`)."""
        for index in handle.pids:
            self._signal(cluster_id, handle, index, signal.SIGTERM)
        for _ in range(max(1, int(grace_s / 0.05))):
            if not any(self._alive(cluster_id, handle, index) for index in handle.pids):
                break
            await asyncio.sleep(0.05)
        self._kill_now(cluster_id, handle)

    async def release(self, cluster_id: str, handle: LocalHandle) -> None:
        """Forget the worker processes of a finished cluster once they have been reaped."""
        children = self._children.get(cluster_id, {})
        for index, child in list(children.items()):
            if child.poll() is not None:
                del children[index]
        if not children:
            self._children.pop(cluster_id, None)

    def _kill_now(self, cluster_id: str, handle: LocalHandle) -> None:
        children = self._children.get(cluster_id, {})
        for index in handle.pids:
            if self._alive(cluster_id, handle, index):
                self._signal(cluster_id, handle, index, signal.SIGKILL)
            child = children.get(index)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=1.0)

    def _signal(
        self, cluster_id: str, handle: LocalHandle, index: int, sig: signal.Signals
    ) -> None:
        child = self._children.get(cluster_id, {}).get(index)
        if child is not None:  # Popen sends nothing once it has reaped the child
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
        else:
            handle.worker(index).signal(sig)

    def _alive(self, cluster_id: str, handle: LocalHandle, index: int) -> bool:
        child = self._children.get(cluster_id, {}).get(index)
        if child is not None:
            return child.poll() is None
        return handle.worker(index).alive()
