"""Entry point of a worker process: read the assignment, run the clients, report on stdout.

``python -m clientswarm.worker.main --assignment -`` reads the assignment as the first line of
stdin. When its ``start_ns`` is 0 the worker builds everything, writes ``{"type": "ready"}``
and waits for a ``{"type": "start", "start_ns": …}`` line, so that slow process start-up never
eats into the schedule. After that, end of stdin (the parent died) stops the worker like
SIGTERM or SIGINT do: in-flight requests are recorded as cancelled and every sample taken is
still shipped before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import orjson

from clientswarm.worker.assignment import Assignment, WorkerReport
from clientswarm.worker.pipe import PipeSink
from clientswarm.worker.runtime import WorkerRuntime

log = logging.getLogger("clientswarm.worker")


def read_assignment(source: str) -> Assignment:
    """Load an assignment from a file path, or from the first line of stdin for ``-``."""
    text = sys.stdin.readline() if source == "-" else Path(source).read_text()
    return Assignment.model_validate_json(text)


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _watch_parent(reader: asyncio.StreamReader, runtime: WorkerRuntime) -> None:
    while await reader.readline():
        pass
    log.warning("stdin closed: the parent is gone, stopping")
    runtime.stop()


async def run_worker(assignment: Assignment, *, follow_stdin: bool) -> WorkerReport:
    """Run ``assignment`` with a pipe sink on stdout; return the worker's report."""
    sink = await PipeSink.stdout(assignment.worker)
    reader = await _stdin_reader() if follow_stdin else None
    if assignment.start_ns == 0:
        if reader is None:
            raise ValueError("an assignment without start_ns needs --assignment - (stdin)")
        await sink.send_message({"type": "ready"})
        line = await reader.readline()
        if not line:
            raise SystemExit("stdin closed before the start message")
        assignment.start_ns = int(orjson.loads(line)["start_ns"])
    runtime = WorkerRuntime(assignment, sink)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stop)

    async def report_status() -> None:
        while True:
            await asyncio.sleep(assignment.batch_interval_s)
            await sink.send_status(
                {"in_flight": runtime.in_flight, "recorded": runtime.recorder.recorded}
            )

    helpers = [asyncio.create_task(report_status())]
    if reader is not None:
        helpers.append(asyncio.create_task(_watch_parent(reader, runtime)))
    try:
        report = await runtime.run()
    finally:
        for task in helpers:
            task.cancel()
    await sink.finish(report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Process entry: returns 0 when the worker completed or was stopped, 1 when it failed."""
    import argparse

    parser = argparse.ArgumentParser(prog="clientswarm-worker", description=__doc__)
    parser.add_argument("--assignment", default="-", help="assignment JSON file, '-' for stdin")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    assignment = read_assignment(args.assignment)
    coro = run_worker(assignment, follow_stdin=args.assignment == "-")
    try:
        import uvloop

        report = uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        report = asyncio.run(coro)
    return 0 if report.outcome != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
