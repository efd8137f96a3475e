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
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from clientswarm.spawners.base import ClusterLaunch

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
