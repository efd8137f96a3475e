"""Worker processes started before their cluster exists, so start-up overlaps.

``clientswarm run`` knows how many local workers it needs as soon as the configuration is
valid, a second or more before its in-process service is up. It starts that many
``python -m clientswarm.worker --standby`` processes at once: they load their code while the
service loads its own. When the :class:`~clientswarm.spawners.local.LocalSpawner` submits the
cluster, it hands each standby its orders as one JSON line on stdin (:func:`handoff_line`)
instead of starting a fresh interpreter. A standby that is not needed sees its stdin close
and exits; one that died while loading is skipped and a fresh process started instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import orjson

from clientswarm.spawners.base import ClusterLaunch

STANDBY_FLAG = "--standby"


def handoff_line(launch: ClusterLaunch, index: int, log_path: Path) -> bytes:
    """The orders a standby worker reads from stdin: what a fresh one gets as arguments and
    environment, plus the log file its output goes to from then on."""
    orders = {
        "args": launch.worker_args(index),
        "env": launch.worker_env(),
        "log": str(log_path),
    }
    return orjson.dumps(orders) + b"\n"


class StandbyWorkers:
    """A few worker processes that have loaded their code and wait for their orders."""

    def __init__(self, python: str, processes: list[subprocess.Popen[bytes]]) -> None:
        self.python = python
        self._waiting = processes

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
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                except OSError:  # the spawner starts fresh ones and reports the error then
                    break
        return cls(python, processes)

    def __len__(self) -> int:
        return len(self._waiting)

    def hand_off(
        self, launch: ClusterLaunch, index: int, log_path: Path
    ) -> subprocess.Popen[bytes] | None:
        """A live standby given worker ``index`` of ``launch``; ``None`` when none is left."""
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
        """Dismiss the standbys nobody took: their stdin closes and they exit."""
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
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, 9)
        process.wait()
