"""The ``local`` spawner: workers are child processes of this machine.

Each worker is ``python -m clientswarm.worker.main`` speaking the pipe protocol of
:mod:`clientswarm.worker.pipe`: the assignment goes in on stdin, batches come out on stdout,
logs on stderr (the tail is kept for the report of a worker that dies).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson

from clientswarm.errors import SpawnerError
from clientswarm.worker.assignment import Assignment
from clientswarm.worker.pipe import decode_message

STDERR_TAIL_LINES = 40
# Batches are single JSON lines; allow large ones (many samples with long ITL lists).
LINE_LIMIT_BYTES = 256 * 1024 * 1024


class LocalWorker:
    """One worker process: its messages, its stderr tail, and how to stop it."""

    def __init__(self, index: int, process: asyncio.subprocess.Process) -> None:
        self.index = index
        self.process = process
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_task = asyncio.create_task(self._read_stderr())

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def send(self, message: dict[str, Any]) -> None:
        """Write one JSON line to the worker's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps(message) + b"\n")
        with contextlib.suppress(ConnectionError):
            await self.process.stdin.drain()

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """The worker's messages until its stdout closes."""
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            if line.strip():
                yield decode_message(line)

    def terminate(self) -> None:
        """Ask the worker to stop (SIGTERM): it records in-flight requests as cancelled."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout_s: float = 30.0) -> int:
        """Wait for the exit code; kill the worker if it takes longer than ``timeout_s``."""
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            code = await self.process.wait()
        with contextlib.suppress(Exception):
            await self._stderr_task
        return code

    def stderr_text(self) -> str:
        """The last lines the worker wrote to stderr."""
        return "\n".join(self.stderr_tail)


class LocalSpawner:
    """Starts one child process per worker on this machine."""

    kind = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    async def start(self, assignment: Assignment) -> LocalWorker:
        """Start the worker of ``assignment`` and hand it the assignment."""
        try:
            process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "clientswarm.worker.main",
                "--assignment",
                "-",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT_BYTES,
                # Own session: a terminal's Ctrl-C reaches the orchestrator only, which stops
                # the workers in order; a worker whose parent dies sees stdin close and stops.
                start_new_session=True,
            )
        except OSError as exc:
            raise SpawnerError(
                f"could not start worker {assignment.worker} with {self.python}: {exc}"
            ) from exc
        worker = LocalWorker(assignment.worker, process)
        await worker.send(assignment.model_dump(mode="json"))
        return worker
